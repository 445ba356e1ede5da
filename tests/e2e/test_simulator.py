"""The simulator drives the running system through its public API, and what the
service celebrates is what the pure rules give on the same histories."""

from __future__ import annotations

import pytest

from bench import simulate

# Seed 2026: improver 2's anxious moments fall enough for every level of fewer_anxious_episodes (the rules find
# the three on one day), gappy partner 2 gets a false calmer_episodes (the rule's own false rate), steady 0 and
# worsening 0 get nothing. Their histories arrive late, in order: if the sync pauses for longer than the settle
# time, the evaluation of what has arrived finds nothing these partners' whole histories do not find on the same
# day (checked for every other day of each history). In reverse it would not be so: a pause with improver 2's
# first 5-17 days still to come dates the milestone otherwise (BENCHMARKS.md).
PARTNERS = "improvers:2,gappy:2,steady:0,worsening:0"


@pytest.mark.e2e
def test_the_services_milestones_are_the_pure_rules_daily_looks_at_the_same_histories(running):
    rep = simulate.main(
        [
            "--partners",
            PARTNERS,
            "--order",
            "in-order",
            "--journal",
            running.urls["journal"],
            "--milestones",
            running.urls["milestones"],
            "--json",
        ]
    )
    assert rep["entries_posted"] > 400
    agreement = rep["agreement"]
    assert agreement["disagree"] == [], (
        "every (type, level) and its day as the rules' daily looks give them"
    )
    assert agreement["agree"] == agreement["partners"] == 4
    assert (
        agreement["milestones"] == 4
    )  # fewer_anxious_episodes levels 1-3, and one calmer_episodes
    fewer = rep["types"]["fewer_anxious_episodes"]
    assert (
        fewer["true_changes"] == 1
        and fewer["true_detections"] == 1
        and fewer["false_detections"] == 0
    )
    assert rep["types"]["more_independence"]["detected"] == 0
