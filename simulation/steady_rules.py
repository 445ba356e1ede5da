"""The false rate of the milestones no cohort changes: ``calmer_episodes`` and ``more_independence``.

``python -m simulation.steady_rules [--partners 2000]``: the simulator's
intensities and independence activities are steady in every cohort, so any
detection is a false one. Each rule of ``services.milestones.rules`` is
looked at every day of each null partner's history (120-180 days, and again
over two years), as the service looks, until it first fires; the report is
the share of partners with any detection. Held-out seed 2026.
"""

from __future__ import annotations

import argparse
import json

from services.milestones.rules import CALMER_EPISODES, MORE_INDEPENDENCE

from . import cohorts, looks

__all__ = ["KINDS", "false_rates", "main"]

KINDS = (CALMER_EPISODES, MORE_INDEPENDENCE)


def false_rates(seed: int, n: int, history_days: int | None = None) -> dict:
    """Per null cohort, the share of partners each rule ever fires on, looked at every day."""
    out = {}
    for name in looks.NULL_COHORTS:
        fired = {kind: 0 for kind in KINDS}
        for partner in looks.partners(seed, name, n, history_days):
            for kind, day in cohorts.first_detections(partner, KINDS).items():
                fired[kind] += day is not None
        out[name] = {kind: count / n for kind, count in fired.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=2000, help="null partners a cohort")
    parser.add_argument("--seed", type=int, default=looks.HELD_OUT_SEED)
    args = parser.parse_args(argv)
    report = {
        "seed": args.seed,
        "partners_per_cohort": args.partners,
        "usual_histories": false_rates(args.seed, args.partners),
        "two_years": false_rates(args.seed, args.partners, looks.LONG_HISTORY_DAYS),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
