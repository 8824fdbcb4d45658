"""
When a sequence step may go out: delays, send windows in the subscriber's time
zone, dates taken from attributes, and the rule that skips stale steps.

Pure functions over datetimes — no database — so the scheduler (campaigns.scheduler)
can compute one answer per (step, time zone) for a whole batch and the rules can
be tested exhaustively, daylight-saving changes included.

Conventions:

- every datetime in and out is aware; results are in UTC;
- the time zone of a subscriber is theirs, else their list's, else the site's
  (settings.TIME_ZONE), else UTC — an unknown name falls through to the next;
- a delay in minutes or hours is elapsed time; a delay in days or weeks is
  calendar days in the subscriber's time zone, so "1 day" after a mail sent at
  9:00 is 9:00 the next day even across a daylight-saving change (23 or 25 hours);
- a send window is a range of local hours on allowed weekdays; a step that comes
  due outside it waits for the next opening. `end_hour` is exclusive and may be
  24; an end before the start (22–6) runs past midnight and belongs to the
  weekday it starts on;
- a local time that does not exist (the hour skipped in spring) is read as the
  instant the clocks jump to; an hour that happens twice is its first occurrence.
"""

import calendar
import functools
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings

MINUTES, HOURS, DAYS, WEEKS = "minutes", "hours", "days", "weeks"
UNIT_CHOICES = [(MINUTES, "minutes"), (HOURS, "hours"), (DAYS, "days"), (WEEKS, "weeks")]
_ELAPSED = {MINUTES: timedelta(minutes=1), HOURS: timedelta(hours=1)}
_CALENDAR_DAYS = {DAYS: 1, WEEKS: 7}

ALL_WEEKDAYS = frozenset(range(7))  # 0 is Monday, as in datetime.weekday()
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# A window with at least one allowed weekday opens within 8 days of any moment
# (a full week, plus the day before for windows that run past midnight).
_SEARCH_DAYS = 9


class ScheduleError(ValueError):
    """A timing that can never be met (e.g. a window with no weekdays); the text says how to fix it."""


# --- Time zones ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _zone(name):
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def zone_for(*names):
    """The first known zone among `names` (subscriber's, list's), else the site's, else UTC."""
    for name in (*names, settings.TIME_ZONE):
        zone = _zone(name)
        if zone is not None:
            return zone
    return UTC


def to_instant(local, zone):
    """A naive local wall-clock time in `zone` as an aware UTC datetime (see the module's rules)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


# --- Windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Allowed local hours [start_hour, end_hour) on allowed weekdays; no hours means all day."""

    start_hour: int | None = None
    end_hour: int | None = None
    weekdays: frozenset = field(default=ALL_WEEKDAYS)

    def __post_init__(self):
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        problem = self.problem()
        if problem:
            raise ScheduleError(problem)

    def problem(self):
        if not self.weekdays:
            return "Choose at least one weekday on which this step may be sent."
        if not self.weekdays <= ALL_WEEKDAYS:
            return "Weekdays are numbered 0 (Monday) to 6 (Sunday)."
        if (self.start_hour is None) != (self.end_hour is None):
            return "Give both the first and the last hour of the send window, or neither."
        if self.start_hour is not None:
            if not (0 <= self.start_hour <= 23 and 1 <= self.end_hour <= 24):
                return "Send window hours run from 0 to 24."
            if self.start_hour == self.end_hour:
                return "The send window must not start and end at the same hour."
        return ""

    @property
    def is_always_open(self):
        return self.start_hour is None and self.weekdays == ALL_WEEKDAYS

    def openings(self, day):
        """The local (start, end) naive datetimes of the opening that starts on `day`, or None."""
        if day.weekday() not in self.weekdays:
            return None
        midnight = datetime.combine(day, time())
        if self.start_hour is None:
            return midnight, midnight + timedelta(days=1)
        start = midnight + timedelta(hours=self.start_hour)
        end = midnight + timedelta(hours=self.end_hour)
        if self.end_hour < self.start_hour:
            end += timedelta(days=1)
        return start, end

    def describe(self):
        days = "every day" if self.weekdays == ALL_WEEKDAYS else ", ".join(
            WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        if self.start_hour is None:
            return f"any time, {days}"
        return f"{self.start_hour:02d}:00–{self.end_hour:02d}:00, {days}"


ALWAYS = Window()


def weekdays_from_mask(mask):
    """Bit d of `mask` set: weekday d (0 = Monday) allowed."""
    return frozenset(d for d in range(7) if mask & (1 << d))


def mask_from_weekdays(weekdays):
    return sum(1 << d for d in set(weekdays))


def fit(moment, window, zone):
    """The earliest instant at or after `moment` that falls inside `window` in `zone`."""
    if window.is_always_open:
        return moment
    first_day = moment.astimezone(zone).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        opening = window.openings(first_day + timedelta(days=offset))
        if opening is None:
            continue
        start, end = (to_instant(local, zone) for local in opening)
        if end > moment and end > start:
            return max(start, moment)
    raise ScheduleError("The send window never opens; choose at least one weekday.")


# --- Delays --------------------------------------------------------------------------------


def add_delay(moment, amount, unit, zone):
    """`moment` plus a delay: elapsed time for minutes and hours, calendar days in `zone` otherwise."""
    if amount < 0:
        raise ScheduleError("A delay cannot be negative.")
    if unit in _ELAPSED:
        return moment + amount * _ELAPSED[unit]
    if unit not in _CALENDAR_DAYS:
        raise ScheduleError(f"Unknown delay unit {unit!r}; use minutes, hours, days or weeks.")
    local = moment.astimezone(zone).replace(tzinfo=None)
    return to_instant(local + timedelta(days=amount * _CALENDAR_DAYS[unit]), zone)


def delay_seconds(amount, unit):
    """A delay's nominal length (a day as 86,400 s), for display and ordering."""
    if unit in _ELAPSED:
        return int(amount * _ELAPSED[unit].total_seconds())
    return amount * _CALENDAR_DAYS.get(unit, 1) * 86400


def describe_delay(amount, unit):
    if amount == 0:
        return "immediately"
    word = unit[:-1] if amount == 1 else unit
    return f"{amount} {word} later"


# --- Dates from attributes ---------------------------------------------------------------------

_DATE = re.compile(r"^\s*(?:(\d{4})-|--)?(\d{1,2})-(\d{1,2})(?:[T ].*)?\s*$")


def parse_date(value):
    """(year or None, month, day) from '1990-04-23', '04-23', '--04-23' or a date-time; None if unusable."""
    if isinstance(value, (date, datetime)):
        return value.year, value.month, value.day
    match = _DATE.match(str(value)) if isinstance(value, str) else None
    if not match:
        return None
    year = int(match.group(1)) if match.group(1) else None
    month, day = int(match.group(2)), int(match.group(3))
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:
        return None
    return year, month, day


def _on(year, month, day):
    """The date, with 29 February falling on the 28th in years without it."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def next_date(value, *, after, zone, window=ALWAYS, offset_days=0, yearly=True):
    """The send time of a date step: the (anniversary of the) date in `value`, moved by
    `offset_days`, at the window's first opening that day in `zone`, at or after `after`.

    None when the value is not a date, or a one-off date (not `yearly`) has passed.
    """
    parsed = parse_date(value)
    if parsed is None:
        return None
    year, month, day = parsed
    if not yearly:
        if year is None:
            return None
        years = [year]
    else:
        this_year = after.astimezone(zone).year
        years = range(this_year - 1, this_year + 3)
    for candidate in years:
        local_day = _on(candidate, month, day) + timedelta(days=offset_days)
        at = fit(to_instant(datetime.combine(local_day, time()), zone), window, zone)
        if at >= after:
            return at
    return None


# --- A step's timing ------------------------------------------------------------------------------

AFTER_DELAY, ON_DATE = "delay", "date"


@dataclass(frozen=True)
class Timing:
    """When a step goes: `amount unit` after the previous one, or on a date attribute; in a window."""

    kind: str = AFTER_DELAY
    amount: int = 0
    unit: str = DAYS
    window: Window = ALWAYS
    date_attribute: str = ""
    offset_days: int = 0
    yearly: bool = True

    @property
    def needs_attributes(self):
        return self.kind == ON_DATE

    def when(self, *, base, zone, attributes=None):
        """When the step is due for a subscriber whose previous step went at `base`;
        None when it cannot be scheduled for them (no usable date)."""
        if self.kind == ON_DATE:
            value = (attributes or {}).get(self.date_attribute)
            return next_date(value, after=base, zone=zone, window=self.window,
                             offset_days=self.offset_days, yearly=self.yearly)
        return fit(add_delay(base, self.amount, self.unit, zone), self.window, zone)

    def describe(self):
        if self.kind == ON_DATE:
            shift = ""
            if self.offset_days:
                shift = f"{abs(self.offset_days)} day(s) {'before' if self.offset_days < 0 else 'after'} "
            every = "every year" if self.yearly else "once"
            return f"{shift}the date in “{self.date_attribute}”, {every}"
        return describe_delay(self.amount, self.unit)


# --- Stale steps --------------------------------------------------------------------------------


def stale_before(now, skip_after_days):
    """A step due before this time is skipped, not sent late (None: never, `skip_after_days` 0):
    after a long pause, subscribers do not get a burst of outdated mail."""
    return now - timedelta(days=skip_after_days) if skip_after_days else None


def is_stale(due_at, now, skip_after_days):
    """Whether a step due at `due_at` is skipped (see stale_before)."""
    cutoff = stale_before(now, skip_after_days)
    return cutoff is not None and due_at < cutoff
