"""When the evaluator looks at a partner: 04:00 in the partner's own time zone."""

from datetime import UTC, datetime

from services.milestones.evaluation import local_today, next_daily_run


def test_the_daily_evaluation_is_at_four_local_across_a_daylight_saving_change():
    # Paris leaves summer time on 2026-10-25 at 03:00 local.
    before = next_daily_run("Europe/Paris", datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    after = next_daily_run("Europe/Paris", datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    assert before == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)  # 04:00 CET = 03:00 UTC
    assert after == datetime(2026, 10, 26, 3, 0, tzinfo=UTC)
    assert next_daily_run("Europe/Paris", datetime(2026, 7, 1, 1, 59, tzinfo=UTC)) == datetime(
        2026, 7, 1, 2, 0, tzinfo=UTC
    )  # 04:00 CEST = 02:00 UTC, later that night


def test_each_partner_runs_in_their_own_zone():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert next_daily_run("Pacific/Auckland", now) == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert next_daily_run("America/Los_Angeles", now) == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_an_unknown_zone_falls_back_to_utc():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert next_daily_run("Nowhere/Atlantis", now) == datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    assert local_today(None, now).isoformat() == "2026-11-23"
