"""The simulator drives the running system through its public API."""
from __future__ import annotations

import pytest

from bench import simulate


@pytest.mark.e2e
def test_simulator_posts_cohorts_and_reads_milestones_back(running):
    rep = simulate.main(["--per-cohort", "1", "--order", "reversed", "--journal", running.urls["journal"],
                         "--milestones", running.urls["milestones"], "--json"])
    assert rep["entries_posted"] > 400
    fewer = rep["types"]["fewer_anxious_episodes"]
    assert fewer["true_changes"] == 1  # the one improver
    for t, r in rep["types"].items():
        assert r["false_detections"] == 0, f"{t}: a celebration among steady, worsening or gappy partners"
