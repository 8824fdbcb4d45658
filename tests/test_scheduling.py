"""The pure timing rules of sequence steps: zones, windows, delays, dates, stale steps."""

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from campaigns import scheduling
from campaigns.scheduling import ALWAYS, ScheduleError, Timing, Window

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
MORNING = Window(9, 11)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def local(zone, *args):
    return datetime(*args, tzinfo=zone).astimezone(UTC)


# --- Time zones -------------------------------------------------------------------------------


def test_zone_for_prefers_the_subscriber_then_the_list_then_the_site(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert scheduling.zone_for("Asia/Tokyo", "America/New_York") == TOKYO
    assert scheduling.zone_for("", "America/New_York") == NEW_YORK
    assert scheduling.zone_for("Mars/Olympus_Mons", "") == BERLIN
    assert scheduling.zone_for("", "") == BERLIN


def test_zone_for_falls_back_to_utc_when_nothing_is_known(settings):
    settings.TIME_ZONE = "Nowhere/Special"
    assert scheduling.zone_for("", "also/unknown") == UTC


# --- Windows ------------------------------------------------------------------------------------


def test_fit_keeps_a_moment_inside_the_window():
    moment = local(NEW_YORK, 2025, 6, 2, 9, 30)
    assert scheduling.fit(moment, MORNING, NEW_YORK) == moment


def test_fit_moves_an_early_moment_to_the_opening_the_same_day():
    assert scheduling.fit(local(TOKYO, 2025, 6, 2, 6, 15), MORNING, TOKYO) == local(TOKYO, 2025, 6, 2, 9)


def test_fit_moves_a_late_moment_to_the_next_morning():
    assert scheduling.fit(local(TOKYO, 2025, 6, 2, 11, 0), MORNING, TOKYO) == local(TOKYO, 2025, 6, 3, 9)


def test_fit_skips_weekdays_that_are_not_allowed():
    weekdays_only = Window(9, 11, weekdays={0, 1, 2, 3, 4})
    friday_noon = local(BERLIN, 2025, 6, 6, 12)
    assert scheduling.fit(friday_noon, weekdays_only, BERLIN) == local(BERLIN, 2025, 6, 9, 9)


def test_fit_with_only_weekdays_and_no_hours_waits_for_the_day_to_start():
    saturdays = Window(weekdays={5})
    assert scheduling.fit(local(BERLIN, 2025, 6, 4, 15), saturdays, BERLIN) == local(BERLIN, 2025, 6, 7, 0)


def test_fit_window_past_midnight_belongs_to_the_day_it_starts():
    # given a window 22:00–06:00 allowed only on Mondays
    nights = Window(22, 6, weekdays={0})
    # then Tuesday 02:00 is inside Monday's night, Tuesday 07:00 waits for next Monday
    assert scheduling.fit(local(BERLIN, 2025, 6, 3, 2), nights, BERLIN) == local(BERLIN, 2025, 6, 3, 2)
    assert scheduling.fit(local(BERLIN, 2025, 6, 3, 7), nights, BERLIN) == local(BERLIN, 2025, 6, 9, 22)


def test_fit_window_ending_at_24_runs_to_midnight():
    evening = Window(20, 24)
    assert scheduling.fit(local(BERLIN, 2025, 6, 3, 23, 59), evening, BERLIN) == local(BERLIN, 2025, 6, 3, 23, 59)


def test_fit_morning_window_in_new_york_follows_the_clock_across_spring_forward():
    # New York moves from UTC-5 to UTC-4 on 9 March 2025 at 02:00.
    assert scheduling.fit(utc(2025, 3, 8, 12), MORNING, NEW_YORK) == utc(2025, 3, 8, 14)
    assert scheduling.fit(utc(2025, 3, 8, 17), MORNING, NEW_YORK) == utc(2025, 3, 9, 13)


def test_fit_opening_inside_the_skipped_hour_starts_when_the_clocks_jump():
    two_am = Window(2, 4)
    assert scheduling.fit(utc(2025, 3, 9, 5), two_am, NEW_YORK) == utc(2025, 3, 9, 7)  # 03:00 EDT


def test_fit_opening_in_the_repeated_hour_is_its_first_occurrence():
    one_am = Window(1, 2)
    assert scheduling.fit(utc(2025, 11, 2, 4), one_am, NEW_YORK) == utc(2025, 11, 2, 5)  # 01:00 EDT


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weekdays": set()}, "at least one weekday"),
        ({"start_hour": 9}, "both the first and the last hour"),
        ({"start_hour": 9, "end_hour": 9}, "not start and end at the same hour"),
        ({"start_hour": 9, "end_hour": 25}, "from 0 to 24"),
        ({"weekdays": {7}}, "0 (Monday) to 6 (Sunday)"),
    ],
)
def test_window_rejects_impossible_settings_with_a_reason(kwargs, message):
    with pytest.raises(ScheduleError, match=re.escape(message)):
        Window(**kwargs)


def test_weekday_masks_round_trip():
    assert scheduling.mask_from_weekdays({0, 4, 6}) == 0b1010001
    assert scheduling.weekdays_from_mask(0b1010001) == frozenset({0, 4, 6})


def test_window_describes_itself():
    assert Window(9, 11, weekdays={0, 2}).describe() == "09:00–11:00, Mon, Wed"
    assert ALWAYS.describe() == "any time, every day"


def _inside(instant, window, zone):
    """Reference rule, checked hour by local hour: is `instant` inside `window`?"""
    at = instant.astimezone(zone)
    if window.start_hour is None:
        return at.weekday() in window.weekdays
    if window.start_hour < window.end_hour:
        return at.weekday() in window.weekdays and window.start_hour <= at.hour < window.end_hour
    return (at.hour >= window.start_hour and at.weekday() in window.weekdays) or (
        at.hour < window.end_hour and (at.weekday() - 1) % 7 in window.weekdays
    )


windows = st.builds(
    lambda hours, days: Window(*hours, weekdays=days),
    st.one_of(
        st.just((None, None)),
        st.tuples(st.integers(0, 23), st.integers(1, 24)).filter(lambda h: h[0] != h[1]),
    ),
    st.frozensets(st.integers(0, 6), min_size=1),
)
moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))
zones = st.sampled_from([NEW_YORK, TOKYO, BERLIN, zoneinfo.ZoneInfo("Australia/Lord_Howe"), UTC])


@hsettings(max_examples=150, deadline=None)
@given(moment=moments, window=windows, zone=zones)
def test_fit_is_the_earliest_instant_inside_the_window(moment, window, zone):
    result = scheduling.fit(moment, window, zone)
    assert result >= moment
    assert _inside(result, window, zone)
    probe = moment
    while probe < result - timedelta(minutes=15):
        assert not _inside(probe, window, zone), f"{probe} was open before {result}"
        probe += timedelta(minutes=15)


# --- Delays -------------------------------------------------------------------------------------


def test_add_delay_in_hours_is_elapsed_time_across_spring_forward():
    before = local(NEW_YORK, 2025, 3, 9, 1, 30)  # 01:30 EST
    assert scheduling.add_delay(before, 1, scheduling.HOURS, NEW_YORK) == local(NEW_YORK, 2025, 3, 9, 3, 30)


def test_add_delay_in_days_keeps_the_local_hour_across_spring_forward():
    # given 09:00 in New York the day before the clocks move
    sent = local(NEW_YORK, 2025, 3, 8, 9)
    # when a day passes
    later = scheduling.add_delay(sent, 1, scheduling.DAYS, NEW_YORK)
    # then it is 09:00 again there, 23 hours later
    assert later.astimezone(NEW_YORK).hour == 9
    assert later - sent == timedelta(hours=23)


def test_add_delay_in_weeks_is_seven_local_days():
    sent = local(BERLIN, 2025, 3, 27, 10)
    assert scheduling.add_delay(sent, 1, scheduling.WEEKS, BERLIN) == local(BERLIN, 2025, 4, 3, 10)


def test_add_delay_rejects_negative_delays_and_unknown_units():
    with pytest.raises(ScheduleError, match="negative"):
        scheduling.add_delay(utc(2025, 1, 1), -1, scheduling.DAYS, UTC)
    with pytest.raises(ScheduleError, match="Unknown delay unit 'fortnights'"):
        scheduling.add_delay(utc(2025, 1, 1), 1, "fortnights", UTC)


def test_describe_delay_reads_naturally():
    assert scheduling.describe_delay(0, scheduling.DAYS) == "immediately"
    assert scheduling.describe_delay(1, scheduling.DAYS) == "1 day later"
    assert scheduling.describe_delay(3, scheduling.HOURS) == "3 hours later"


def test_delay_seconds_counts_a_day_as_86400():
    assert scheduling.delay_seconds(2, scheduling.DAYS) == 172800
    assert scheduling.delay_seconds(90, scheduling.MINUTES) == 5400


# --- Dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1990-04-23", (1990, 4, 23)),
        ("04-23", (None, 4, 23)),
        ("--04-23", (None, 4, 23)),
        ("2026-12-01T10:00:00+00:00", (2026, 12, 1)),
        ("2024-02-29", (2024, 2, 29)),
        ("2023-02-29", None),
        ("13-01", None),
        ("soon", None),
        (19900423, None),
        (None, None),
    ],
)
def test_parse_date_accepts_iso_dates_and_month_day(value, expected):
    assert scheduling.parse_date(value) == expected


def test_next_date_is_this_years_birthday_at_the_window_opening():
    after = local(TOKYO, 2026, 4, 1, 12)
    assert scheduling.next_date("1990-04-23", after=after, zone=TOKYO, window=MORNING) == local(TOKYO, 2026, 4, 23, 9)


def test_next_date_rolls_to_next_year_once_this_years_has_passed():
    after = local(TOKYO, 2026, 4, 23, 9, 0, 5)  # just after this year's birthday mail
    assert scheduling.next_date("04-23", after=after, zone=TOKYO, window=MORNING) == local(TOKYO, 2027, 4, 23, 9)


def test_next_date_for_29_february_falls_on_the_28th_in_common_years():
    after = utc(2026, 1, 1)
    assert scheduling.next_date("2000-02-29", after=after, zone=UTC) == utc(2026, 2, 28)


def test_next_date_with_offset_goes_days_before_the_date():
    after = utc(2026, 1, 1)
    renewal = scheduling.next_date("2026-03-10", after=after, zone=BERLIN, offset_days=-7, yearly=False)
    assert renewal == local(BERLIN, 2026, 3, 3, 0)


def test_next_date_once_is_none_after_the_date_has_passed():
    assert scheduling.next_date("2026-03-10", after=utc(2026, 3, 11), zone=UTC, yearly=False) is None
    assert scheduling.next_date("03-10", after=utc(2026, 1, 1), zone=UTC, yearly=False) is None


# --- Timing -------------------------------------------------------------------------------------


def test_timing_after_a_delay_applies_the_window_in_the_zone():
    timing = Timing(amount=1, unit=scheduling.DAYS, window=MORNING)
    base = local(NEW_YORK, 2025, 3, 8, 10, 30)
    assert timing.when(base=base, zone=NEW_YORK) == local(NEW_YORK, 2025, 3, 9, 10, 30)


def test_timing_on_a_date_reads_the_subscribers_attribute():
    timing = Timing(kind=scheduling.ON_DATE, date_attribute="birthday", window=MORNING)
    base = utc(2026, 1, 1)
    assert timing.when(base=base, zone=UTC, attributes={"birthday": "1980-02-03"}) == utc(2026, 2, 3, 9)
    assert timing.when(base=base, zone=UTC, attributes={}) is None
    assert timing.when(base=base, zone=UTC, attributes={"birthday": "not a date"}) is None


def test_timing_describes_itself():
    assert Timing(amount=2, unit=scheduling.DAYS).describe() == "2 days later"
    on_date = Timing(kind=scheduling.ON_DATE, date_attribute="renewal", offset_days=-7, yearly=False)
    assert on_date.describe() == "7 day(s) before the date in “renewal”, once"


# --- Stale steps ------------------------------------------------------------------------------------


def test_is_stale_only_past_the_configured_days():
    now = utc(2026, 5, 10, 12)
    assert scheduling.is_stale(now - timedelta(days=3, seconds=1), now, 3) is True
    assert scheduling.is_stale(now - timedelta(days=3), now, 3) is False
    assert scheduling.is_stale(now - timedelta(days=300), now, 0) is False
