"""Evaluation reads only the days the rules need: the detections must be
exactly those of the whole history, evidence included."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from bench.evaluation_growth import _entry, build
from services.milestones import app as milestones_app
from services.milestones import detectors, evaluation
from shared.db import make_session_factory, unit_of_work


def test_bounded_history_detects_exactly_what_the_whole_history_does(backend):
    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    a, b, couple = build(sessions, handlers, 730, random.Random(5))
    today = datetime.now(timezone.utc).date()
    with unit_of_work(sessions) as s:  # a calmer last half year for Ana, rated communication rising for both
        for i in range(180):
            day = today - timedelta(days=180 - i)
            for pid in (a, b):
                handlers["journal.entry.recorded"](s, _entry(pid, couple, "daily_reflection", day,
                                                             {"communication": 5}, datetime.now(timezone.utc)))
    compared = found = 0
    with unit_of_work(sessions) as s:
        full_a, _ = evaluation.history(s, a)
        full_b, _ = evaluation.history(s, b)
        for back in range(0, 730, 23):
            as_of = today - timedelta(days=back)
            bounded_a, prior_a = evaluation.history(s, a, as_of, as_of)
            bounded_b, prior_b = evaluation.history(s, b, as_of, as_of)
            assert len(bounded_a.days) < len(full_a.days) or back > 400
            whole = detectors.detect_partner_milestones(full_a, as_of) + \
                detectors.detect_couple_milestones(full_a, full_b, as_of)
            part = detectors.detect_partner_milestones(bounded_a, as_of) + \
                detectors.detect_couple_milestones(bounded_a, bounded_b, as_of, prior_a + prior_b)
            assert part == whole, as_of
            compared += 1
            found += len(whole)
    assert compared == 32 and found > 0  # the comparison saw real detections, not only empty lists
