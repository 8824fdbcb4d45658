"""A sequence scheduler as its own process, for the reliability tests: the beat task's body
(campaigns.scheduler.tick) in a loop until SIGTERM. The clock comes from SCHEDULER_CLOCK_FILE."""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoresponder.settings")

import django  # noqa: E402

django.setup()

from campaigns import scheduler  # noqa: E402

running = True


def _stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, _stop)
# After each pass the process writes the clock it used, so a test knows every
# scheduler has seen the time it set before it looks at the outcome.
report = Path(os.environ["SCHEDULER_REPORT_DIR"]) / str(os.getpid()) if os.environ.get("SCHEDULER_REPORT_DIR") else None
while running:
    now = scheduler.clock()
    scheduler.tick()
    if report is not None:
        report.write_text(now.isoformat())
    time.sleep(float(os.environ.get("SCHEDULER_PAUSE", "0.05")))
