"""
The DNS checks of a sending domain, as receivers will see it: DKIM (each key),
SPF (present once, letting every active backend send), DMARC (present and
readable), From alignment (DMARC passes through DKIM or SPF) and an MX for the
Return-Path domain.

Each result says, in one plain sentence, what is wrong and the exact fix. The
results are stored on the domain with its status: verified when nothing is in
error; otherwise pending (never verified yet) or failing (it was verified once).
A DNS server that does not answer leaves the status as it was: a flaky resolver
must not flip a good domain to failing.
"""

import ipaddress

from django.db import transaction
from django.utils import timezone

from autoresponder import dns as ardns

from . import domains, presend, spf
from .domain_names import domain_of, is_aligned, org_domain
from .models import Backend, DkimKey, SendingDomain, SenderIdentity

OK, WARNING, ERROR = "ok", "warning", "error"
DMARC_POLICIES = ("none", "quarantine", "reject")


def _result(key, title, level, detail, fix="", record=None, temporary=False):
    found = {"key": key, "title": title, "level": level, "detail": detail, "fix": fix}
    if record:
        found["record"] = {"type": record.type, "name": record.name, "value": record.value}
    if temporary:
        found["temporary"] = True
    return found


def _publish(record):
    return f"Publish this {record.type} record at {record.name}: {record.value}"


def _dns_failed(key, title, exc):
    return _result(key, title, WARNING, f"DNS did not answer: {exc}", "Check again in a few minutes.", temporary=True)


def check(sending_domain):
    """Run every check, store the results and the status, and return the results."""
    res = ardns.resolver()
    backends = domains.active_backends()
    results = [dkim_check(key, res) for key in _keys(sending_domain)]
    results += [spf_check(sending_domain, backends, res)]
    dmarc_result, dmarc_tags = dmarc_check(sending_domain, res)
    results += [dmarc_result, alignment_check(sending_domain, backends, dmarc_tags), mx_check(sending_domain, res)]
    _store(sending_domain, results)
    return results


def _keys(sending_domain):
    return list(sending_domain.keys.exclude(state=DkimKey.RETIRED).order_by("algorithm", "-state", "created_at"))


@transaction.atomic
def _store(sending_domain, results):
    now = timezone.now()
    locked = SendingDomain.objects.select_for_update().get(pk=sending_domain.pk)
    if any(r["level"] == ERROR for r in results):
        locked.status = SendingDomain.FAILING if locked.verified_at else SendingDomain.PENDING
    elif not any(r.get("temporary") for r in results):
        locked.status, locked.verified_at = SendingDomain.VERIFIED, now
    locked.checks, locked.checked_at = results, now
    locked.save(update_fields=["status", "verified_at", "checks", "checked_at", "updated_at"])
    for field in ("status", "verified_at", "checks", "checked_at", "updated_at"):
        setattr(sending_domain, field, getattr(locked, field))


def check_all():
    """Beat, daily: re-check every sending domain (a record can change or vanish at any time)."""
    for sending_domain in SendingDomain.objects.order_by("pk"):
        check(sending_domain)


@presend.check
def from_domain_authenticated(sample):
    """Pre-send check: receivers can tell the mail is from its From domain (as last checked; no DNS here)."""
    if sample.is_local_outbox:
        return None  # nothing leaves this machine
    ok, reason = domains.is_authenticated(sample.from_domain)
    return presend.Result(presend.OK if ok else presend.WARNING, "From domain authenticated", reason)


# --- DKIM -----------------------------------------------------------------------------------------


def _tags(text):
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def dkim_check(key, res):
    record = domains.dkim_record(key)
    label = "RSA" if key.algorithm == DkimKey.RSA else "Ed25519"
    title = f"DKIM {label} key ({key.selector})"
    rkey = f"dkim-{key.selector}"
    try:
        found = [r for r in ardns.txt(record.name, res) if "p=" in r or r.lower().startswith("v=dkim1")]
    except ardns.DNSLookupError as exc:
        return _dns_failed(rkey, title, exc)
    is_next = key.state == DkimKey.NEXT
    if not found:
        detail = f"There is no DKIM record at {record.name}."
        if is_next:
            detail += " Mail stays signed with the current key until you publish this new one."
        return _result(rkey, title, WARNING if is_next else ERROR, detail, _publish(record), record)
    if len(found) > 1:
        return _result(rkey, title, ERROR, f"{record.name} has {len(found)} DKIM records; receivers may read the "
                       "wrong one.", f"Keep only this TXT record at {record.name}: {record.value}", record)
    tags = _tags(found[0])
    if not tags.get("p"):
        problem = f"The DKIM record at {record.name} has an empty key (p=), which means the key was revoked."
    elif tags["p"] != key.public_key:
        problem = f"The DKIM record at {record.name} holds a different key than this domain signs with."
    elif tags.get("k", "rsa").lower() != key.algorithm:
        problem = f"The DKIM record at {record.name} says k={tags.get('k', 'rsa')}, but the key is {key.algorithm}."
    else:
        detail = f"The DKIM record at {record.name} matches the key."
        if is_next and domains.promote(key):
            detail += " This new key signs your mail from now on; the old key's record can go in a few days."
        return _result(rkey, title, OK, detail)
    return _result(rkey, title, WARNING if is_next else ERROR, problem,
                   f"Replace the TXT record at {record.name} with: {record.value}", record)


# --- SPF ------------------------------------------------------------------------------------------


def spf_check(sending_domain, backends, res):
    record = domains.spf_record(sending_domain, backends)
    name = record.name
    tree = spf.walk(name, res)
    if tree.temporary:
        return _dns_failed("spf", "SPF", tree.error)
    if not tree.records:
        return _result("spf", "SPF", ERROR, f"There is no SPF record at {name}.", _publish(record), record)
    if len(tree.records) > 1:
        merged = _merge(tree.records, _mechanisms(backends))
        return _result("spf", "SPF", ERROR, f"{name} has {len(tree.records)} SPF records; receivers treat that as "
                       "an error and ignore them all.", f"Replace them with one TXT record at {name}: {merged}",
                       domains.Record("spf", "SPF", "TXT", name, merged))
    if tree.error:
        return _result("spf", "SPF", ERROR, f"The SPF record at {name} cannot be evaluated: {tree.error}.",
                       "Remove includes you no longer send through, or replace them with ip4:/ip6: ranges.")
    problems, missing, notes = _coverage(name, tree, backends, res)
    if problems:
        merged = _merge(tree.records, missing)
        return _result("spf", "SPF", ERROR, f"The SPF record at {name} " + "; ".join(problems) + ".",
                       f"Replace the TXT record at {name} with: {merged}",
                       domains.Record("spf", "SPF", "TXT", name, merged))
    detail = f"The SPF record at {name} lets your active backends send ({tree.lookups} of 10 DNS lookups)."
    return _result("spf", "SPF", WARNING if notes else OK, " ".join([detail, *notes]))


def _mechanisms(backends):
    return domains.spf_mechanisms(backends)[0]


def _coverage(name, tree, backends, res):
    """(problems, missing mechanisms, notes) for each active backend the record does not cover."""
    problems, missing, notes = [], [], []
    for backend in backends:
        include = domains.ESP_SPF_INCLUDES.get(backend.kind)
        if include:
            if include not in tree.includes:
                problems.append(f"does not include {include} for {backend.name}")
                missing.append(f"include:{include}")
        elif backend.kind == Backend.SMTP:
            _smtp_coverage(name, backend, res, problems, missing, notes)
    return problems, missing, notes


def _smtp_coverage(name, backend, res, problems, missing, notes):
    mechanisms = domains.spf_mechanisms([backend])[0]
    try:
        found = [backend.host] if _is_ip(backend.host) else ardns.addresses(backend.host, res)
    except ardns.DNSLookupError as exc:
        notes.append(f"The address of {backend.host} could not be looked up ({exc}).")
        return
    public = [a for a in found if ipaddress.ip_address(a).is_global]
    if not public:
        notes.append(f"{backend.name} hands mail to {backend.host}, a private address, so the public address "
                     "your mail leaves from cannot be checked here; make sure the record lists it.")
        return
    for address in public:
        outcome = spf.check_host(address, name, res)
        if outcome.result != spf.PASS:
            problems.append(f"does not let {backend.host} ({address}) send for {backend.name} "
                            f"(a receiver gets “{outcome.result}”)")
            missing.extend(m for m in mechanisms if m not in missing)


def _is_ip(host):
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _merge(existing, wanted):
    """One SPF record: the mechanisms of the `existing` records (sorted, so the advice is stable),
    then the `wanted` ones they lack, then the first record's all (or redirect)."""
    body, tail = [], []
    for record in sorted(existing):
        for term in record.split()[1:]:
            if term.lower().lstrip("+-~?") == "all" or term.lower().startswith("redirect="):
                tail = tail or [term]
            elif term not in body:
                body.append(term)
    body += [m for m in wanted if m not in body]
    return " ".join(["v=spf1", *body, *(tail or ["~all"])])


# --- DMARC ----------------------------------------------------------------------------------------


def dmarc_check(sending_domain, res):
    """(result, tags of the record in force or {})."""
    record = domains.dmarc_record(sending_domain)
    names = [f"_dmarc.{sending_domain.domain}"]
    org = org_domain(sending_domain.domain)
    if org != sending_domain.domain:
        names.append(f"_dmarc.{org}")  # receivers fall back to the organizational domain's policy
    for name in names:
        try:
            found = [r for r in ardns.txt(name, res) if r.lower().replace(" ", "").startswith("v=dmarc1")]
        except ardns.DNSLookupError as exc:
            return _dns_failed("dmarc", "DMARC", exc), {}
        if found:
            return _dmarc_result(name, found, record), _tags(found[0]) if len(found) == 1 else {}
    return _result("dmarc", "DMARC", ERROR, f"There is no DMARC record at {record.name}; Gmail and Yahoo "
                   "reject bulk mail without one.", _publish(record), record), {}


def _dmarc_result(name, found, record):
    fix = f"Replace it with one TXT record at {name}: {record.value}"
    if len(found) > 1:
        return _result("dmarc", "DMARC", ERROR, f"{name} has {len(found)} DMARC records; receivers ignore them all.",
                       fix, record)
    tags = _tags(found[0])
    if _first_tag(found[0]) != "v" or tags.get("p", "").lower() not in DMARC_POLICIES:
        return _result("dmarc", "DMARC", ERROR, f"The DMARC record at {name} cannot be read: it must start with "
                       "v=DMARC1 and have p=none, p=quarantine or p=reject.", fix, record)
    policy = tags["p"].lower()
    meaning = {"none": "reports only; nothing is blocked", "quarantine": "failing mail goes to spam",
               "reject": "failing mail is refused"}[policy]
    detail = f"The DMARC record at {name} has the policy p={policy} ({meaning})."
    if not tags.get("rua"):
        return _result("dmarc", "DMARC", WARNING, detail + " It asks for no reports (rua=), so you will not "
                       "see who sends as your domain.", "Add rua=mailto:you@yourdomain to the record.")
    return _result("dmarc", "DMARC", OK, detail)


def _first_tag(text):
    return text.split(";", 1)[0].partition("=")[0].strip().lower()


# --- Alignment --------------------------------------------------------------------------------------


def alignment_check(sending_domain, backends, dmarc_tags):
    """DMARC passes when the From domain aligns with the DKIM d= or the Return-Path domain."""
    title = "From alignment"
    strict_dkim = dmarc_tags.get("adkim", "r").lower() == "s"
    strict_spf = dmarc_tags.get("aspf", "r").lower() == "s"
    return_path = domains.return_path_domain(sending_domain)
    from_domains = _from_domains(sending_domain)
    smtp = any(b.kind == Backend.SMTP for b in backends)
    esps = [b for b in backends if b.is_esp]
    problems = []
    for from_domain in from_domains:
        dkim_ok = smtp and is_aligned(sending_domain.domain, from_domain, strict=strict_dkim)
        spf_ok = is_aligned(return_path, from_domain, strict=strict_spf)
        if not (dkim_ok or spf_ok):
            problems.append(_misaligned(sending_domain, from_domain, return_path, smtp, strict_dkim))
    if problems:
        return _result("alignment", title, ERROR, " ".join(p[0] for p in problems), " ".join(p[1] for p in problems))
    detail = (f"Mail From {', '.join(from_domains)} is signed as d={sending_domain.domain}"
              f"{' (relaxed alignment)' if from_domains != [sending_domain.domain] else ''}, "
              f"and its Return-Path domain is {return_path}.")
    if esps:
        names = ", ".join(b.name for b in esps)
        return _result("alignment", title, WARNING, detail + f" {names} sign with their own domain unless you "
                       f"authenticate {sending_domain.domain} in their console too.",
                       f"Set up domain authentication for {sending_domain.domain} at {names}.")
    return _result("alignment", title, OK, detail)


def _from_domains(sending_domain):
    """The domains of sender identities this sending domain covers (itself when none does yet)."""
    found = {domain_of(e) for e in SenderIdentity.objects.values_list("from_email", flat=True)}
    covered = sorted(d for d in found if domains.sending_domain_for(d) == sending_domain)
    return covered or [sending_domain.domain]


def _misaligned(sending_domain, from_domain, return_path, smtp, strict_dkim):
    why = []
    if not smtp:
        why.append("no SMTP backend signs it with this domain's key")
    elif strict_dkim:
        why.append(f"DKIM signs as {sending_domain.domain} and the DMARC record asks for the exact domain (adkim=s)")
    why.append(f"the Return-Path domain is {return_path}")
    fix = (f"Add {from_domain} as a sending domain of its own"
           + (", or remove adkim=s from the DMARC record." if strict_dkim else "."))
    return f"Mail From {from_domain} fails DMARC: {' and '.join(why)}.", fix


# --- MX -----------------------------------------------------------------------------------------------


def mx_check(sending_domain, res):
    name = domains.return_path_domain(sending_domain)
    title = f"MX for {name}"
    try:
        hosts = ardns.mx(name, res)
        fallback = [] if hosts else ardns.addresses(name, res)
    except ardns.DNSLookupError as exc:
        return _dns_failed("mx", title, exc)
    fix = (f"Publish an MX record at {name} pointing to the server that receives its mail and bounces, "
           f"e.g. 10 mail.{org_domain(name)}")
    if hosts == [(0, "")]:
        return _result("mx", title, ERROR, f"{name} says it receives no mail (a null MX), so bounces to the "
                       "Return-Path are lost and some receivers refuse the mail.", fix)
    if hosts:
        listed = ", ".join(host for _pref, host in hosts)
        return _result("mx", title, OK, f"{name} receives mail (and bounces) at {listed}.")
    if fallback:
        return _result("mx", title, WARNING, f"{name} has no MX record; senders fall back to its address "
                       f"({fallback[0]}), which some receivers do not accept for a Return-Path.", fix)
    return _result("mx", title, ERROR, f"{name} has no MX record and no address, so receivers cannot send "
                   "bounces back and may refuse the mail.", fix)
