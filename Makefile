# Autoresponder — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test check-python services clean
# bench-<name> targets are a pattern rule (pattern rules never apply to .PHONY names).

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Autoresponder needs Python 3.11 or newer; found " + sys.version.split()[0])'

$(VENV)/.installed: requirements.txt | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements into $(VENV)…"
	@$(PIP) install -r requirements.txt
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	@$(PIP) install -r requirements-test.txt
	@touch $@

## make run: the whole app (web, worker, scheduler) on embedded defaults, or on
## DATABASE_URL / CELERY_BROKER_URL / EMAIL_URL when set. Ctrl-C stops it.
run: $(VENV)/.installed
	@DEBUG=$${DEBUG:-1} $(PY) manage.py quickstart

## make test: the test suite against real Postgres, Redis and SMTP on loopback.
test: $(VENV)/.installed-test services
	$(PY) -m pytest $(PYTEST_ARGS)

services:
	@scripts/services.sh

bench-%: $(VENV)/.installed-test services
	@test -f bench/$*.py || { echo "No benchmark named $* (see bench/)"; exit 2; }
	@ANYMAIL_WEBHOOK_SECRET=$${ANYMAIL_WEBHOOK_SECRET:-bench:not-a-secret} $(PY) bench/$*.py

clean:
	rm -rf $(VENV) data .pytest_cache
