"""Celery tasks: thin bells that carry ids and call the pipeline; safe to run twice."""

from celery import shared_task

from . import broadcasts, sending


@shared_task(name="campaigns.kick", ignore_result=True)
def kick():
    """Beat, every SEND_KICK_SECONDS: start due broadcasts, reap leases, ring send slots."""
    sending.kick()


@shared_task(name="campaigns.start_broadcast", ignore_result=True)
def start_broadcast(broadcast_id):
    """Rung after "send now" or "resume" commits: write the ledger, ring the slots."""
    broadcasts.start(broadcast_id)


@shared_task(name="campaigns.send_broadcast_slot", ignore_result=True)
def send_broadcast_slot(broadcast_id, slot):
    """Send batches for one time slice, then ring again while work remains."""
    if sending.run_slot(broadcast_id, slot):
        send_broadcast_slot.delay(broadcast_id, slot)


# --- REST hooks (campaigns/hooks.py) ---------------------------------------------------------


@shared_task(name="campaigns.deliver_hooks", ignore_result=True)
def deliver_hooks():
    """Rung after an event commits, and by the beat: deliver due hook deliveries for a time
    slice, then ring again while some are still due. Safe to run twice (claims skip locked rows)."""
    from . import hooks

    if hooks.deliver_for(seconds=25):
        deliver_hooks.delay()


@shared_task(name="campaigns.prune_hook_deliveries", ignore_result=True)
def prune_hook_deliveries():
    """Hourly: forget finished deliveries older than HOOK_LOG_DAYS."""
    from . import hooks

    hooks.prune()


# --- Sequences (campaigns/scheduler.py, campaigns/step_sending.py) ----------------------------


@shared_task(name="campaigns.schedule_sequences", ignore_result=True)
def schedule_sequences():
    """Beat, every SEQUENCE_TICK_SECONDS: enroll newcomers, queue due steps, ring step senders."""
    from . import scheduler

    scheduler.tick()


@shared_task(name="campaigns.schedule_sequence", ignore_result=True)
def schedule_sequence(sequence_id):
    """Rung when a sequence is switched on or someone is enrolled: the same, for one sequence."""
    from . import scheduler

    scheduler.run_one(sequence_id)


@shared_task(name="campaigns.enroll_subscriber", ignore_result=True)
def enroll_subscriber(subscriber_id):
    """Sent by name right after a signup, confirmation or tag commits: a prompt welcome mail."""
    from . import sequences

    sequences.enroll_subscriber(subscriber_id)


@shared_task(name="campaigns.send_step_slot", ignore_result=True)
def send_step_slot(step_id, slot):
    """Send a step's mail for one time slice, then ring again while work remains."""
    from . import step_sending

    if step_sending.run_slot(step_id, slot):
        send_step_slot.delay(step_id, slot)


@shared_task(name="campaigns.drain_events", ignore_result=True)
def drain_events():
    """Beat, every TRACKING_DRAIN_SECONDS: move buffered opens and clicks into Postgres (campaigns.events)."""
    from . import events

    events.drain()


@shared_task(name="campaigns.read_bounce_mailbox", ignore_result=True)
def read_bounce_mailbox():
    """Beat, every BOUNCE_MAILBOX_SECONDS: bounces, complaints and mailto unsubscribes (campaigns.inbound).
    One reader at a time; a pass that outlives the lock only means some mail is read twice (harmless)."""
    from django.core.cache import cache

    from . import inbound

    if not cache.add("campaigns:bounce-mailbox", 1, timeout=600):
        return
    try:
        inbound.read_mailbox()
    finally:
        cache.delete("campaigns:bounce-mailbox")



@shared_task(name="campaigns.sunset", ignore_result=True)
def sunset_daily():
    """Beat, hourly: once a day, apply the sunset policy and count the inactive subscribers (campaigns.sunset)."""
    from . import sunset

    sunset.daily()


@shared_task(name="campaigns.count_sunset", ignore_result=True)
def count_sunset():
    """Rung after the sunset policy changes, or from its page: count the inactive subscribers again."""
    from . import sunset

    sunset.count()


@shared_task(name="campaigns.run_sunset_job", ignore_result=True)
def run_sunset_job(job_id):
    """Unsubscribe the inactive subscribers in chunks, with progress; safe to deliver twice."""
    from . import sunset

    sunset.run_job(job_id)


@shared_task(name="campaigns.check_sending_domains", ignore_result=True)
def check_sending_domains():
    """Beat, daily: look every sending domain's DNS records up again (campaigns.domain_checks)."""
    from . import domain_checks

    domain_checks.check_all()
