"""When a push or email goes out: quiet hours and one message a day, in the recipient's own zone."""

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notify.celebrate import COUPLE_TITLE, OWN_TITLE
from services.notify.pacing import (
    FOLDED_INTRO,
    PendingItem,
    Plan,
    due_at,
    fold,
    is_paced,
    local_day,
    plan_sends,
    quiet_until,
    start_of_next_local_day,
    zone,
)

UTC = UTC
NIGHT = ("22:00", "08:00")


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def item(
    n: int, created_at: datetime, body: str | None = None, title: str = OWN_TITLE
) -> PendingItem:
    return PendingItem(f"n{n}", title, body or f"journal entries: {n * 10} so far", created_at)


# -- quiet hours --------------------------------------------------------------------------------


def test_quiet_hours_across_midnight_hold_a_message_until_the_morning_on_both_sides_of_midnight():
    # London in November is on UTC.
    assert quiet_until(at(2026, 11, 23, 22, 30), "Europe/London", NIGHT) == at(2026, 11, 24, 8, 0)
    assert quiet_until(at(2026, 11, 24, 3, 0), "Europe/London", NIGHT) == at(2026, 11, 24, 8, 0)
    assert quiet_until(at(2026, 11, 23, 22, 0), "Europe/London", NIGHT) == at(2026, 11, 24, 8, 0)


def test_outside_quiet_hours_nothing_is_held_and_the_end_itself_is_not_quiet():
    assert quiet_until(at(2026, 11, 24, 8, 0), "Europe/London", NIGHT) is None
    assert quiet_until(at(2026, 11, 24, 21, 59, 59), "Europe/London", NIGHT) is None
    assert quiet_until(at(2026, 11, 24, 12, 0), "Europe/London", ("13:00", "14:00")) is None
    assert quiet_until(at(2026, 11, 24, 13, 30), "Europe/London", ("13:00", "14:00")) == at(
        2026, 11, 24, 14, 0
    )


def test_quiet_hours_are_in_the_recipients_zone_not_utc():
    now = at(2026, 11, 23, 12, 0)
    assert quiet_until(now, "Europe/London", NIGHT) is None
    # 01:00 NZDT in Auckland (UTC+13): quiet until 08:00 NZDT, 19:00 UTC.
    assert quiet_until(now, "Pacific/Auckland", NIGHT) == at(2026, 11, 23, 19, 0)
    # 07:00 EST in New York: quiet for one more hour.
    assert quiet_until(now, "America/New_York", NIGHT) == at(2026, 11, 23, 13, 0)


def test_quiet_hours_across_the_spring_forward_night_in_paris():
    # 2026-03-29: 02:00 CET becomes 03:00 CEST. 08:00 CEST is 06:00 UTC.
    assert quiet_until(at(2026, 3, 28, 23, 0), "Europe/Paris", NIGHT) == at(2026, 3, 29, 6, 0)
    assert quiet_until(at(2026, 3, 29, 1, 0), "Europe/Paris", NIGHT) == at(2026, 3, 29, 6, 0)
    assert quiet_until(at(2026, 3, 29, 6, 0), "Europe/Paris", NIGHT) is None
    # The evening before, still winter time: 22:00 CET is 21:00 UTC.
    assert quiet_until(at(2026, 3, 28, 20, 59), "Europe/Paris", NIGHT) is None
    assert quiet_until(at(2026, 3, 28, 21, 0), "Europe/Paris", NIGHT) == at(2026, 3, 29, 6, 0)


def test_quiet_hours_across_the_fall_back_night_in_paris():
    # 2026-10-25: 03:00 CEST becomes 02:00 CET. 22:00 CEST is 20:00 UTC, 08:00 CET is 07:00 UTC.
    assert quiet_until(at(2026, 10, 24, 19, 59), "Europe/Paris", NIGHT) is None
    assert quiet_until(at(2026, 10, 24, 20, 0), "Europe/Paris", NIGHT) == at(2026, 10, 25, 7, 0)
    assert quiet_until(at(2026, 10, 25, 1, 30), "Europe/Paris", NIGHT) == at(2026, 10, 25, 7, 0)
    assert quiet_until(at(2026, 10, 25, 7, 0), "Europe/Paris", NIGHT) is None


def test_quiet_hours_across_both_daylight_saving_changes_in_new_york():
    # 2026-03-08: 02:00 EST becomes 03:00 EDT; 07:00 EDT is 11:00 UTC.
    assert quiet_until(at(2026, 3, 8, 5, 0), "America/New_York", ("22:00", "07:00")) == at(
        2026, 3, 8, 11, 0
    )
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; 07:00 EST is 12:00 UTC.
    assert quiet_until(at(2026, 11, 1, 5, 0), "America/New_York", ("22:00", "07:00")) == at(
        2026, 11, 1, 12, 0
    )
    # 22:00 EDT on the evening before the fall-back is 02:00 UTC.
    assert quiet_until(at(2026, 11, 1, 1, 59), "America/New_York", ("22:00", "07:00")) is None
    assert quiet_until(at(2026, 11, 1, 2, 0), "America/New_York", ("22:00", "07:00")) == at(
        2026, 11, 1, 12, 0
    )


def test_quiet_hours_across_both_daylight_saving_changes_in_auckland():
    # 2026-09-27: 02:00 NZST (UTC+12) becomes 03:00 NZDT (UTC+13); 07:00 NZDT is 18:00 UTC the day before.
    assert quiet_until(at(2026, 9, 26, 10, 30), "Pacific/Auckland", ("22:00", "07:00")) == at(
        2026, 9, 26, 18, 0
    )
    # 2026-04-05: 03:00 NZDT becomes 02:00 NZST; 07:00 NZST is 19:00 UTC the day before.
    assert quiet_until(at(2026, 4, 4, 9, 30), "Pacific/Auckland", ("22:00", "07:00")) == at(
        2026, 4, 4, 19, 0
    )


def test_a_quiet_end_in_the_spring_forward_gap_is_the_moment_the_clocks_jump():
    # 02:30 does not exist in Paris on 2026-03-29: the clocks jump from 02:00 CET to 03:00 CEST at 01:00 UTC.
    assert quiet_until(at(2026, 3, 28, 23, 0), "Europe/Paris", ("22:00", "02:30")) == at(
        2026, 3, 29, 1, 0
    )
    assert quiet_until(at(2026, 3, 29, 1, 0), "Europe/Paris", ("22:00", "02:30")) is None
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    assert quiet_until(at(2026, 3, 8, 4, 0), "America/New_York", ("23:00", "02:30")) == at(
        2026, 3, 8, 7, 0
    )


def test_a_quiet_start_in_the_spring_forward_gap_begins_when_the_clocks_jump():
    assert quiet_until(at(2026, 3, 29, 0, 59), "Europe/Paris", ("02:30", "06:00")) is None
    assert quiet_until(at(2026, 3, 29, 1, 0), "Europe/Paris", ("02:30", "06:00")) == at(
        2026, 3, 29, 4, 0
    )


def test_a_quiet_window_entirely_inside_the_gap_is_empty_that_night():
    assert quiet_until(at(2026, 3, 29, 1, 0), "Europe/Paris", ("02:15", "02:45")) is None
    assert quiet_until(at(2026, 3, 30, 0, 20), "Europe/Paris", ("02:15", "02:45")) == at(
        2026, 3, 30, 0, 45
    )


def test_a_quiet_end_in_the_repeated_hour_is_its_later_occurrence():
    # 02:30 happens twice in Paris on 2026-10-25: 00:30 UTC (CEST) and 01:30 UTC (CET). Quiet lasts
    # until the later one, so a message never arrives while the clock reads a quiet time.
    quiet = ("22:00", "02:30")
    assert quiet_until(at(2026, 10, 25, 0, 15), "Europe/Paris", quiet) == at(2026, 10, 25, 1, 30)
    assert quiet_until(at(2026, 10, 25, 0, 45), "Europe/Paris", quiet) == at(2026, 10, 25, 1, 30)
    assert quiet_until(at(2026, 10, 25, 1, 15), "Europe/Paris", quiet) == at(2026, 10, 25, 1, 30)
    assert quiet_until(at(2026, 10, 25, 1, 30), "Europe/Paris", quiet) is None


def test_a_quiet_start_in_the_repeated_hour_is_its_earlier_occurrence():
    quiet = ("02:30", "06:00")  # 06:00 CET is 05:00 UTC
    assert quiet_until(at(2026, 10, 25, 0, 29), "Europe/Paris", quiet) is None
    assert quiet_until(at(2026, 10, 25, 0, 30), "Europe/Paris", quiet) == at(2026, 10, 25, 5, 0)


def test_quiet_windows_that_touch_on_the_spring_forward_night_are_one_quiet_period():
    # 02:30-02:00 leaves 02:00-02:30 free each day, but that half hour does not exist on 2026-03-29.
    quiet = ("02:30", "02:00")
    assert quiet_until(at(2026, 3, 28, 23, 0), "Europe/Paris", quiet) == at(2026, 3, 30, 0, 0)
    assert quiet_until(at(2026, 3, 30, 0, 0), "Europe/Paris", quiet) is None


def test_an_unknown_time_zone_falls_back_to_utc():
    now = at(2026, 11, 23, 23, 0)
    assert quiet_until(now, "Nowhere/Atlantis", NIGHT) == at(2026, 11, 24, 8, 0)
    assert quiet_until(now, None, NIGHT) == at(2026, 11, 24, 8, 0)
    assert quiet_until(now, "", NIGHT) == at(2026, 11, 24, 8, 0)
    assert due_at(at(2026, 11, 23, 12, 0), "Nowhere/Atlantis", NIGHT) == at(2026, 11, 23, 12, 0)
    assert start_of_next_local_day(now, "Nowhere/Atlantis") == at(2026, 11, 24, 0, 0)


def test_no_quiet_hours_or_an_empty_window_hold_nothing():
    now = at(2026, 11, 23, 23, 0)
    assert quiet_until(now, "Europe/London", None) is None
    assert quiet_until(now, "Europe/London", ("23:00", "23:00")) is None
    assert due_at(now, "Europe/London", None) == now


def test_a_naive_now_or_a_malformed_time_is_refused():
    with pytest.raises(ValueError):
        quiet_until(datetime(2026, 11, 23, 23, 0), "Europe/London", NIGHT)
    with pytest.raises(ValueError):
        quiet_until(at(2026, 11, 23, 23, 0), "Europe/London", ("10pm", "08:00"))


def test_due_at_is_now_outside_quiet_hours_and_their_end_inside():
    assert due_at(at(2026, 7, 1, 10, 0), "Europe/Paris", NIGHT) == at(2026, 7, 1, 10, 0)
    assert due_at(at(2026, 7, 1, 21, 0), "Europe/Paris", NIGHT) == at(2026, 7, 2, 6, 0)
    # An aware now in another offset is the same instant.
    paris = timezone(timedelta(hours=2))
    assert due_at(datetime(2026, 7, 1, 23, 0, tzinfo=paris), "Europe/Paris", NIGHT) == at(
        2026, 7, 2, 6, 0
    )


# -- the local day ------------------------------------------------------------------------------


def test_the_local_day_starts_at_local_midnight_across_daylight_saving_changes():
    assert start_of_next_local_day(at(2026, 3, 28, 12, 0), "Europe/Paris") == at(
        2026, 3, 28, 23, 0
    )  # CET
    assert start_of_next_local_day(at(2026, 3, 29, 12, 0), "Europe/Paris") == at(
        2026, 3, 29, 22, 0
    )  # CEST
    assert start_of_next_local_day(at(2026, 10, 24, 12, 0), "Europe/Paris") == at(
        2026, 10, 24, 22, 0
    )
    assert start_of_next_local_day(at(2026, 10, 25, 12, 0), "Europe/Paris") == at(
        2026, 10, 25, 23, 0
    )
    assert start_of_next_local_day(at(2026, 11, 1, 3, 0), "America/New_York") == at(
        2026, 11, 1, 4, 0
    )  # EDT
    assert start_of_next_local_day(at(2026, 11, 1, 12, 0), "America/New_York") == at(
        2026, 11, 2, 5, 0
    )  # EST


def test_a_midnight_that_does_not_exist_starts_the_day_when_the_clocks_jump():
    # Santiago springs forward at midnight on 2026-09-06: 00:00 -04 becomes 01:00 -03 at 04:00 UTC.
    assert start_of_next_local_day(at(2026, 9, 5, 12, 0), "America/Santiago") == at(
        2026, 9, 6, 4, 0
    )
    assert local_day(at(2026, 9, 6, 4, 0), "America/Santiago") == date(2026, 9, 6)


# -- daily pacing -------------------------------------------------------------------------------


def test_the_first_message_of_the_day_goes_out_at_once_outside_quiet_hours():
    now = at(2026, 7, 1, 10, 0)  # 12:00 in Paris
    plan = plan_sends([item(1, now)], None, now, "Europe/Paris", NIGHT)
    assert plan.look_again_at is None
    assert plan.send is not None and plan.send.notification_ids == ("n1",)
    # Yesterday's message does not count against today.
    plan = plan_sends([item(1, now)], at(2026, 6, 30, 21, 0), now, "Europe/Paris", NIGHT)
    assert plan.send is not None


def test_the_first_message_of_the_day_waits_for_quiet_hours_to_end():
    now = at(2026, 7, 1, 21, 0)  # 23:00 in Paris
    assert plan_sends([item(1, now)], None, now, "Europe/Paris", NIGHT) == Plan(
        None, at(2026, 7, 2, 6, 0)
    )
    later = at(2026, 7, 2, 6, 0)
    assert plan_sends([item(1, now)], None, later, "Europe/Paris", NIGHT).send.notification_ids == (
        "n1",
    )


def test_nothing_pending_plans_nothing():
    assert plan_sends([], None, at(2026, 7, 1, 10, 0), "Europe/Paris", NIGHT) == Plan(None, None)


def test_a_second_milestone_the_same_local_day_waits_until_the_next_local_day_and_is_then_folded():
    tz = "Europe/Paris"
    first_sent = at(2026, 7, 1, 8, 0)  # 10:00 in Paris
    second = item(2, at(2026, 7, 1, 13, 0), "kind words: 12 this month")
    plan = plan_sends([second], first_sent, at(2026, 7, 1, 13, 0), tz, None)
    assert plan == Plan(None, at(2026, 7, 1, 22, 0))  # local midnight, CEST
    third = item(3, at(2026, 7, 1, 19, 0), "check-ins together: 30 so far")
    assert plan_sends([second, third], first_sent, at(2026, 7, 1, 19, 0), tz, None).send is None
    plan = plan_sends([second, third], first_sent, at(2026, 7, 1, 22, 0), tz, None)
    assert plan.look_again_at is None
    assert plan.send.notification_ids == ("n2", "n3")
    assert plan.send.title == "2 things to celebrate"


def test_the_next_local_day_waits_for_quiet_hours_too():
    first_sent = at(2026, 7, 1, 8, 0)
    plan = plan_sends(
        [item(2, at(2026, 7, 1, 13, 0))], first_sent, at(2026, 7, 1, 13, 0), "Europe/Paris", NIGHT
    )
    assert plan == Plan(None, at(2026, 7, 2, 6, 0))  # 08:00 CEST the next day


def test_the_day_boundary_is_the_recipients_local_midnight_not_utc():
    # Auckland: 23:00 and 00:30 NZDT are on different local days within the same UTC day.
    sent = at(2026, 11, 23, 10, 0)
    assert (
        plan_sends([item(1, sent)], sent, at(2026, 11, 23, 10, 30), "Pacific/Auckland", None).send
        is None
    )
    assert (
        plan_sends([item(1, sent)], sent, at(2026, 11, 23, 11, 30), "Pacific/Auckland", None).send
        is not None
    )
    # New York: 18:00 and 20:00 EST are the same local day on two UTC days.
    sent = at(2026, 11, 23, 23, 0)
    plan = plan_sends([item(1, sent)], sent, at(2026, 11, 24, 1, 0), "America/New_York", None)
    assert plan == Plan(None, at(2026, 11, 24, 5, 0))


def test_the_day_boundary_is_right_on_daylight_saving_days():
    # The fall-back day in Paris lasts 25 hours: a message at 00:30 CEST and one at 23:30 CET share it.
    sent = at(2026, 10, 24, 22, 30)
    plan = plan_sends([item(1, sent)], sent, at(2026, 10, 25, 22, 30), "Europe/Paris", None)
    assert plan == Plan(None, at(2026, 10, 25, 23, 0))
    # The spring-forward day lasts 23 hours.
    sent = at(2026, 3, 28, 23, 30)
    plan = plan_sends([item(1, sent)], sent, at(2026, 3, 29, 21, 30), "Europe/Paris", None)
    assert plan == Plan(None, at(2026, 3, 29, 22, 0))


def test_pacing_in_an_unknown_time_zone_uses_utc_days():
    sent = at(2026, 11, 23, 23, 0)
    plan = plan_sends([item(1, sent)], sent, at(2026, 11, 23, 23, 30), "Nowhere/Atlantis", None)
    assert plan == Plan(None, at(2026, 11, 24, 0, 0))


def test_three_pending_items_fold_into_one_message():
    t = at(2026, 7, 1, 10, 0)
    items = [item(1, t), item(2, t + timedelta(hours=1)), item(3, t + timedelta(hours=2))]
    plan = plan_sends(items, None, t + timedelta(hours=3), "Europe/Paris", NIGHT)
    assert plan.send.notification_ids == ("n1", "n2", "n3")
    assert plan.send.title == "3 things to celebrate"
    assert plan.send.body.splitlines() == [
        FOLDED_INTRO,
        "• journal entries: 10 so far",
        "• journal entries: 20 so far",
        "• journal entries: 30 so far",
    ]


def test_folding_text_lists_each_item_once_oldest_first():
    t = at(2026, 7, 1, 10, 0)
    a = item(1, t, "anxious moments: from about 5 a week in October to about 2 a week now")
    b = item(
        2, t + timedelta(minutes=5), "repairs after a hard moment: 8 so far", title=COUPLE_TITLE
    )
    c = item(
        3,
        t + timedelta(minutes=9),
        "kind words: 12 this month",
        title="Sam shared a milestone with you",
    )
    send = fold([c, a, b, a, c])  # redelivered duplicates, out of order
    assert send.notification_ids == ("n1", "n2", "n3")
    assert send.title == "3 things to celebrate"
    lines = send.body.splitlines()
    assert lines == [
        FOLDED_INTRO,
        "• anxious moments: from about 5 a week in October to about 2 a week now",
        "• repairs after a hard moment: 8 so far",
        "• Sam shared a milestone with you: kind words: 12 this month",
    ]
    for x in (a, b, c):
        assert send.body.count(x.body) == 1


def test_a_single_item_keeps_its_own_words_and_folding_nothing_is_refused():
    t = at(2026, 7, 1, 10, 0)
    send = fold([item(1, t, "kind words: 12 this month", title="Sam shared a milestone with you")])
    assert (send.title, send.body) == (
        "Sam shared a milestone with you",
        "kind words: 12 this month",
    )
    with pytest.raises(ValueError):
        fold([])


def test_the_folded_message_adds_no_comparison_between_partners():
    t = at(2026, 7, 1, 10, 0)
    items = [
        item(1, t, "kind words: 12 this month"),
        item(2, t, "kind words: 9 this month", title="Sam shared a milestone with you"),
    ]
    send = fold(items)
    added = (
        send.body.replace(items[0].body, "").replace(items[1].body, "").replace(items[1].title, "")
    )
    for word in ("than", "more", "less", "ahead", "behind", "better", "worse", "%"):
        assert word not in (added + send.title).lower()


def test_only_email_and_push_are_paced_the_inbox_shows_everything():
    assert not is_paced("in_app")
    assert all(is_paced(c) for c in ("email", "webhook:7", "apprise:3"))


# -- properties ---------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Pacific/Auckland",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/St_Johns",
    "Asia/Kolkata",
    "Nowhere/Atlantis",
]
# Instants near the 2026 daylight-saving changes of those zones, and anywhere else.
TRANSITIONS = [
    at(2026, 3, 29, 1, 0),
    at(2026, 10, 25, 1, 0),
    at(2026, 3, 8, 7, 0),
    at(2026, 11, 1, 6, 0),
    at(2026, 4, 4, 14, 0),
    at(2026, 9, 26, 14, 0),
    at(2026, 4, 4, 15, 0),
    at(2026, 10, 3, 15, 30),
    at(2026, 4, 5, 3, 0),
    at(2026, 9, 6, 4, 0),
    at(2026, 3, 8, 5, 30),
    at(2026, 11, 1, 4, 30),
]

instants = st.one_of(
    st.builds(
        lambda base, s: base + timedelta(seconds=s),
        st.sampled_from(TRANSITIONS),
        st.integers(-36 * 3600, 36 * 3600),
    ),
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
    ),
)
hhmm = st.integers(0, 24 * 60 - 1).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
windows = st.tuples(hhmm, hhmm).filter(lambda w: w[0] != w[1])
zones = st.sampled_from(ZONES)


def wall_time_is_quiet(now: datetime, tz_name: str, quiet: tuple[str, str]) -> bool:
    wall = now.astimezone(zone(tz_name)).time().replace(tzinfo=None)
    start, end = time.fromisoformat(quiet[0]), time.fromisoformat(quiet[1])
    return start <= wall < end if start < end else (wall >= start or wall < end)


@settings(max_examples=400, deadline=None)
@given(now=instants, tz_name=zones, quiet=windows, frac=st.floats(0, 1, exclude_max=True))
def test_the_due_time_is_never_before_now_nor_inside_quiet_hours(now, tz_name, quiet, frac):
    due = due_at(now, tz_name, quiet)
    assert due >= now
    assert quiet_until(due, tz_name, quiet) is None
    assert not wall_time_is_quiet(due, tz_name, quiet)
    assert due - now <= timedelta(hours=48)
    if wall_time_is_quiet(now, tz_name, quiet):  # whenever the recipient's clock reads a quiet time
        assert due > now
    if due > now:  # every instant until then is quiet and ends at the same time
        span = (due - now) // timedelta(microseconds=1)
        mid = now + timedelta(microseconds=min(int(span * frac), span - 1))
        assert quiet_until(mid, tz_name, quiet) == due


steps = st.lists(st.tuples(st.integers(1, 30 * 3600), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=instants,
    tz_name=zones,
    quiet=st.one_of(st.none(), windows),
    steps=steps,
    follow=st.booleans(),
)
def test_at_most_one_send_per_local_day_in_any_sequence_of_plans(
    start, tz_name, quiet, steps, follow
):
    now, pending, last_sent, sends, made = start, [], None, [], 0
    look_again = None

    def plan_now(t):
        nonlocal pending, last_sent, look_again
        plan = plan_sends(pending, last_sent, t, tz_name, quiet)
        if plan.send is not None:
            assert plan.look_again_at is None
            assert set(plan.send.notification_ids) == {p.notification_id for p in pending}
            sends.append((t, plan.send))
            pending, last_sent = [], t
        elif pending:
            assert plan.look_again_at is not None and plan.look_again_at > t
        look_again = plan.look_again_at
        return plan

    for seconds, new in steps:
        # Either wake up when the plan said to, or at some other time.
        now = look_again if follow and look_again is not None else now + timedelta(seconds=seconds)
        if new:
            made += 1
            pending.append(item(made, now))
        plan_now(now)
    for _ in range(2):  # nothing pending waits forever: waking when told sends
        if pending:
            plan = plan_now(look_again)
            assert plan.send is not None

    days = [local_day(t, tz_name) for t, _ in sends]
    assert len(days) == len(set(days))
    for t, _ in sends:
        assert quiet is None or quiet_until(t, tz_name, quiet) is None
    sent_ids = [i for _, s in sends for i in s.notification_ids]
    assert sorted(sent_ids) == sorted(f"n{n}" for n in range(1, made + 1))
