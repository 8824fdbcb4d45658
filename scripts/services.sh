#!/usr/bin/env bash
# Makes sure Postgres and Redis answer on loopback for the tests (starting them when
# installed but stopped, installing them with apt-get when missing, as root) and that
# Debian's Chromium is there for the browser tests (and Dovecot and spamd for theirs).
set -euo pipefail

say() { echo "services: $*"; }

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    say "cannot install $* (not root, or no apt-get). Install it and run again."; exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  if have pg_isready && postgres_up; then return; fi
  have pg_ctlcluster || apt_install postgresql postgresql-contrib
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do postgres_up && break; sleep 1; done
  postgres_up || { say "PostgreSQL did not start; see /var/log/postgresql/"; exit 1; }
  # Trust on loopback for the test user, as on CI machines (a fresh install asks for passwords).
  local hba
  hba=$(su postgres -c "psql -tAc 'SHOW hba_file'")
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    su postgres -c "psql -qc 'SELECT pg_reload_conf()'" >/dev/null
  fi
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if have redis-cli && redis_up; then return; fi
  have redis-server || apt_install redis-server
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { say "Redis did not start; see /var/log/redis/ci.log"; exit 1; }
}

# Browser tests drive Debian's Chromium through Playwright's executable_path.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return
  say "installing Debian's chromium for the browser tests"
  apt_install chromium
}

# The bounce-mailbox tests start their own Dovecot (IMAP and POP3) on loopback (tests/dovecot.py).
ensure_dovecot() {
  [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ] && return
  say "installing Debian's dovecot-imapd and dovecot-pop3d for the bounce-mailbox tests"
  apt_install dovecot-imapd dovecot-pop3d
}

# The pre-send check's tests start their own spamd on loopback (tests/spamd.py), with the
# rules Debian ships and local tests only, so they need no network.
ensure_spamd() {
  [ -x /usr/sbin/spamd ] && return
  say "installing Debian's spamd (SpamAssassin) for the pre-send check tests"
  apt_install spamd spamassassin
}

ensure_postgres
ensure_redis
ensure_chromium
ensure_dovecot
ensure_spamd
say "PostgreSQL and Redis answer on 127.0.0.1; Chromium is at /usr/bin/chromium"
