"""
The sunset policy: unsubscribe the people who stopped reading, before mailbox
providers notice that they never open. Sending to them costs money and
reputation: Gmail and Yahoo weigh engagement, and old unread addresses turn
into spam traps.

A subscription is inactive (and is what a sunset unsubscribes) when all hold:

- it is confirmed, on a list that records who opens or clicks (not an
  aggregate-only list, and tracking opens or clicks), and was confirmed more
  than N months ago: a newcomer has had the whole window to read;
- its subscriber was sent at least one tracked message in the last N months
  (a broadcast or sequence step that tracked opens or clicks, to lists that
  allowed it): someone we did not mail is not a non-reader;
- its subscriber opened or clicked none of their messages in that time (link
  scanners and prefetchers, Event.is_machine, do not count as reading).

The policy (SunsetPolicy, one row) is off, suggests (the overview and the
Settings › Sunset page show how many, with a button that unsubscribes them in
a background job with a progress bar) or applies (a daily job unsubscribes
them). The reason recorded on each subscription starts with "Sunset policy",
so they can be told apart from people who left themselves.

Cost. The count is one query. Measured with EXPLAIN ANALYZE on 200,000
subscribers, 1,000,000 sent messages and 1,200,000 events (Postgres 15, 2 busy
shared cores): 2.4 s. The window's human opens and clicks are read once,
joined to their messages and hashed (a parallel hash anti join: 1.5 s of it);
each remaining candidate then costs one probe of the ledger's subscriber index
to find a message sent to it in the window. Everything grows linearly, so
about 20 s at 1,000,000 subscribers and 10,000,000 events: it runs in the
background (daily, and after the policy changes) and pages show the stored
result. No index was added for it: one on the events would cost every
tracked open a write to shorten this once-a-day scan.

Unsubscribing re-checks each chunk of 10,000 with the same conditions, which
Postgres then answers with nested loops on those rows only (0.4 s a chunk in
the measurement above).
"""

import calendar
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from autoresponder.roles import has_role
from lists import bulk_actions
from lists.jobs import JOB_SECONDS, RUNNING, WAITING, Jobs
from lists.models import MailingList, Subscription

from .models import Broadcast, Event, Message, Sequence, Step, SunsetPolicy

REASON = "Sunset policy: no opens or clicks in {months} months"
CHUNK = 10_000  # subscriptions per transaction when unsubscribing: progress shows, a crash loses one chunk
DAILY_SECONDS = 23 * 3600  # the hourly beat acts once a day (a little under, so the hour does not drift)


def current():
    """The policy (one row, created with the defaults on first use)."""
    return SunsetPolicy.objects.get_or_create(pk=1)[0]


def months_ago(moment, months):
    """The same day and time `months` calendar months before (the 31st becomes the month's last day)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


# --- Who is inactive -------------------------------------------------------------------------------


def tracked_lists():
    """Ids of the lists whose subscribers' opens or clicks are recorded one by one."""
    return list(MailingList.objects.filter(privacy_mode=False).filter(Q(track_opens=True) | Q(track_clicks=True))
                .values_list("pk", flat=True))


def tracked_broadcasts():
    """Ids of the broadcasts whose mail could show an open or a click per subscriber (as composing decides:
    the broadcast and every one of its lists allow it, and none of its lists is aggregate-only)."""
    found = []
    for broadcast in Broadcast.objects.exclude(status=Broadcast.DRAFT).prefetch_related("lists"):
        lists = list(broadcast.lists.all())
        if any(m.privacy_mode for m in lists):
            continue
        opens = broadcast.track_opens and all(m.track_opens for m in lists)
        clicks = broadcast.track_clicks and all(m.track_clicks for m in lists)
        if opens or clicks:
            found.append(broadcast.pk)
    return found


def tracked_steps():
    """Ids of the sequence steps whose mail could show an open or a click per subscriber."""
    sequences = Sequence.objects.filter(mailing_list__privacy_mode=False).filter(
        Q(track_opens=True, mailing_list__track_opens=True) | Q(track_clicks=True, mailing_list__track_clicks=True))
    return list(Step.objects.filter(sequence__in=sequences).values_list("pk", flat=True))


def inactive(months, *, now=None):
    """The inactive subscriptions (see the module docstring), as a lazy QuerySet."""
    cutoff = months_ago(now or timezone.now(), months)
    broadcasts, steps = tracked_broadcasts(), tracked_steps()
    if not broadcasts and not steps:
        return Subscription.objects.none()
    sources = Q()
    if broadcasts:
        sources |= Q(broadcast_id__in=broadcasts)
    if steps:
        sources |= Q(step_id__in=steps)
    mailed = Message.objects.filter(sources, subscriber_id=OuterRef("subscriber_id"), status=Message.SENT,
                                    sent_at__gte=cutoff)
    read = Event.objects.filter(message__subscriber_id=OuterRef("subscriber_id"), kind__in=(Event.OPEN, Event.CLICK),
                                is_machine=False, created_at__gte=cutoff)
    return (Subscription.objects.filter(status=Subscription.CONFIRMED, mailing_list_id__in=tracked_lists())
            .alias(member_since=Coalesce("confirmed_at", "created_at")).filter(member_since__lt=cutoff)
            .filter(Exists(mailed)).exclude(Exists(read)))


def count(policy=None, *, now=None):
    """Count the inactive subscribers and subscriptions now and store the result on the policy."""
    policy = policy or current()
    months = policy.months
    figures = inactive(months, now=now).aggregate(subscriptions=Count("pk"),
                                                  subscribers=Count("subscriber_id", distinct=True))
    SunsetPolicy.objects.filter(pk=policy.pk).update(
        inactive_subscribers=figures["subscribers"], inactive_subscriptions=figures["subscriptions"],
        counted_months=months, counted_at=timezone.now())
    policy.refresh_from_db()
    return policy


def is_counted(policy):
    """Whether the stored count is for the policy's current number of months."""
    return policy.counted_at is not None and policy.counted_months == policy.months


# --- Unsubscribing them ------------------------------------------------------------------------------


def unsubscribe_inactive(months, *, now=None, on_start=lambda total: None, on_chunk=lambda seen, changed: None):
    """Unsubscribe the inactive subscriptions, CHUNK at a time; returns how many changed.

    Their ids are read once (4 bytes each in the database, ~30 in Python: 12 MB for 400,000), then each
    chunk is checked again as it is unsubscribed, so someone who opens a mail meanwhile stays.
    """
    now = now or timezone.now()
    ids = list(inactive(months, now=now).order_by("pk").values_list("pk", flat=True))
    on_start(len(ids))
    reason, changed = REASON.format(months=months), 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        changed += bulk_actions.unsubscribe_subscriptions(inactive(months, now=now).filter(pk__in=chunk),
                                                          reason=reason)
        on_chunk(start + len(chunk), changed)
    return changed


def _record_run(changed):
    """After a run: its outcome, and a count of zero (those it found are unsubscribed now)."""
    now = timezone.now()
    SunsetPolicy.objects.filter(pk=1).update(last_applied_at=now, last_applied_count=changed,
                                             inactive_subscribers=0, inactive_subscriptions=0, counted_at=now)


def daily(now=None):
    """Rung hourly by beat; once a day: apply (mode "apply") and count again (modes "suggest" and "apply").

    The day's run is claimed with a conditional UPDATE, so two beats or a task delivered twice act once.
    """
    now = now or timezone.now()
    policy = current()
    if policy.mode == SunsetPolicy.OFF:
        return None
    due = Q(daily_run_at__isnull=True) | Q(daily_run_at__lt=now - timedelta(seconds=DAILY_SECONDS))
    if SunsetPolicy.objects.filter(due, pk=policy.pk).update(daily_run_at=now) != 1:
        return None  # another worker got there first, or it ran today
    if policy.mode == SunsetPolicy.APPLY:
        _record_run(unsubscribe_inactive(policy.months, now=now))
    return count(now=now)


# --- The button: a background job with progress (lists.jobs, as the bulk actions) -----------------------

JOBS = Jobs("campaigns:sunset-job")
CURRENT_KEY = "campaigns:sunset-job:current"


def running_job():
    """The id of the job waiting or running now, or None."""
    job_id = cache.get(CURRENT_KEY)
    job = get_job(job_id) if job_id else None
    return job_id if job and job["status"] in (WAITING, RUNNING) else None


def start_job(user):
    """Queue a run once the surrounding transaction commits; returns its id (the running one's if any)."""
    from .tasks import run_sunset_job  # tasks call back into this module

    already = running_job()
    if already:
        return already
    job_id = JOBS.start(run_sunset_job, {"months": current().months, "total": None}, user=user)
    cache.set(CURRENT_KEY, job_id, JOB_SECONDS)
    return job_id


def get_job(job_id):
    job = JOBS.get(job_id)
    if job is not None:
        job["started_at"] = datetime.fromtimestamp(job["started"], tz=timezone.get_current_timezone())
    return job


def run_job(job_id):
    """Do a waiting job; one already claimed (a task delivered twice) is left alone."""
    JOBS.run(job_id, _unsubscribe_inactive)


def _unsubscribe_inactive(job, save):
    changed = unsubscribe_inactive(
        job["months"], on_start=lambda total: save(total=total),
        on_chunk=lambda seen, changed: save(seen=seen, changed=changed),
    )
    _record_run(changed)
    return changed


# --- The overview -----------------------------------------------------------------------------------------


def dashboard_sections(request):
    """The overview's sunset note: the stored count (suggest) or the last daily run (apply)."""
    policy = current()
    if policy.mode == SunsetPolicy.OFF:
        return []
    data = {"mode": policy.mode, "months": policy.months,
            "subscribers": policy.inactive_subscribers if is_counted(policy) else None,
            "last_applied_at": policy.last_applied_at, "last_applied_count": policy.last_applied_count,
            "can_manage": has_role(request.user, "admin")}
    return [{"template": "campaigns/_sunset_overview.html", "data": data}]
