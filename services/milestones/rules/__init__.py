"""The project's own milestone rules: pure functions from a partner's daily aggregates to detections.

Nothing here touches a database, a broker, a file or the clock. The caller
gives each partner's daily aggregates (:class:`DayAggregate`, keyed by the
partner's local date) and the evaluation date ``as_of``; the rules return
every milestone type and level whose rule holds as of that date
(:class:`Detection`). Deciding which levels are new, storing and announcing
them is the caller's business: a level is achieved once, ever, and never taken
back. The same aggregates always give the same detections, whatever order
they are given in.

One module a rule (:mod:`.fewer_anxious_episodes`, :mod:`.calmer_episodes`,
:mod:`.more_independence`, :mod:`.better_communication`,
:mod:`.stronger_bond`, :mod:`.rituals_kept`, :mod:`.check_in_rhythm`, and
:mod:`.worsening_check`, never a milestone); :mod:`.registry` names each
milestone's scope, levels, least data, the days an evaluation reads for it
and what its chart shows. The change-point scan's statistics are in
:mod:`.statistics`, the two-window rules' tests in :mod:`.tests_of_change`
and their windows in :mod:`.windows`, the couple scans' looks and threshold
in :mod:`.couple_scan` and their statistic in :mod:`.weekly_means`, the
words in :mod:`.wording`.

The scan rules are calibrated on the simulator's null cohorts (``simulation``)
for a false rate over every daily look of a history, and their thresholds
are read from the committed files that ``make calibrate`` and ``make
calibrate-couples`` write. The couple rules
are given the days of each partner's shared entries alone (the service builds
them so); their evidence, which both partners read, holds the windows
compared with their counts and means, never a breakdown (by ritual, by week,
by partner) that would tell what a single entry said. A headline never reads
as a decline.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from . import (
    better_communication,
    calmer_episodes,
    check_in_rhythm,
    fewer_anxious_episodes,
    more_independence,
    rituals_kept,
    stronger_bond,
)
from .aggregates import (
    CHECK_IN_RITUAL_TAG,
    COUPLE,
    PARTNER,
    DayAggregate,
    Detection,
    History,
    HistoryLike,
)
from .registry import (
    BETTER_COMMUNICATION,
    CALMER_EPISODES,
    CHECK_IN_RHYTHM,
    FEWER_ANXIOUS_EPISODES,
    LEVELS,
    MILESTONE_TYPES,
    MILESTONES,
    MORE_INDEPENDENCE,
    REGISTRY,
    RITUAL_LEVELS,
    RITUALS_KEPT,
    STRONGER_BOND,
    picture,
)

# The package's attribute of each rule's name is the rule's module (the function of that name is in it).
__all__ = [
    "PARTNER",
    "COUPLE",
    "CHECK_IN_RITUAL_TAG",
    "DayAggregate",
    "History",
    "HistoryLike",
    "Detection",
    "FEWER_ANXIOUS_EPISODES",
    "CALMER_EPISODES",
    "MORE_INDEPENDENCE",
    "BETTER_COMMUNICATION",
    "STRONGER_BOND",
    "RITUALS_KEPT",
    "CHECK_IN_RHYTHM",
    "MILESTONE_TYPES",
    "MILESTONES",
    "LEVELS",
    "RITUAL_LEVELS",
    "REGISTRY",
    "picture",
    "detect_partner_milestones",
    "detect_couple_milestones",
]


_PARTNER_RULES = {
    FEWER_ANXIOUS_EPISODES: fewer_anxious_episodes.fewer_anxious_episodes,
    CALMER_EPISODES: calmer_episodes.calmer_episodes,
    MORE_INDEPENDENCE: more_independence.more_independence,
}


def detect_partner_milestones(
    history: HistoryLike, as_of: date, done: Collection[str] = ()
) -> list[Detection]:
    """Every partner-own milestone level that holds as of ``as_of``, in the registry's order.

    ``done``: types whose every level is held already, not looked at (a
    long-time partner's evaluation runs only the rules with a level left).
    """
    h = History.of(history)
    return [
        found
        for m in MILESTONES
        if m.scope == PARTNER and m.type not in done
        for found in _PARTNER_RULES[m.type](h, as_of)
    ]


def detect_couple_milestones(
    a: HistoryLike,
    b: HistoryLike,
    as_of: date,
    prior_rituals: dict[str, int] | None = None,
    done: Collection[str] = (),
) -> list[Detection]:
    """Every couple milestone level that holds as of ``as_of``, in the registry's order.

    Pass an empty history for a partner who has not joined yet. ``done``: as
    in :func:`detect_partner_milestones`.
    """
    ha, hb = History.of(a), History.of(b)
    rules = {
        BETTER_COMMUNICATION: better_communication.better_communication,
        STRONGER_BOND: stronger_bond.stronger_bond,
        RITUALS_KEPT: lambda a, b, as_of: rituals_kept.rituals_kept(a, b, as_of, prior_rituals),
        CHECK_IN_RHYTHM: check_in_rhythm.check_in_rhythm,
    }
    return [
        found
        for m in MILESTONES
        if m.scope == COUPLE and m.type not in done
        for found in rules[m.type](ha, hb, as_of)
    ]
