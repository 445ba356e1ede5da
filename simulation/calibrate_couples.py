"""Calibrate the thresholds of the couple rules on calibration seeds and write them where the rules read them.

``python -m simulation.calibrate_couples [--couples 2000] [--long-couples 1000] [--rule KIND]``:
for each couple rule and each target lifetime false rate, the smallest
threshold base that keeps each null couple cohort (steady, worsening, gappy;
seed 9101, never the reported seeds) at or under it, over every daily look
of each history (120-180 days), on the entries each couple shares, with the
threshold rising ``c ln((day + 1) / 91)`` from day 91; ``c`` (in steps of
0.05) is the smallest that keeps null couples watched for two years at or
under the rule's target (1%) with the base calibrated with it. ``--rule``
calibrates that rule alone and keeps the others' thresholds as they are.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from services.milestones.rules import couple_scan

from . import couple_looks, looks

RISE_STEPS = np.arange(0.0, 3.0001, 0.05)


def _margins(statistics: dict, per_log: float, persistence: int) -> dict:
    return {
        c: [
            looks.Margins(
                couple_looks.held(z, first, lambda d: couple_scan.rise(d, per_log), persistence),
                None,
            )
            for z, first in group
        ]
        for c, group in statistics.items()
    }


def calibrated(
    seed: int, n: int, n_long: int, kinds: tuple[str, ...] = tuple(couple_looks.RULES)
) -> dict:
    null = {c: couple_looks.couples(seed, c, n) for c in couple_looks.NULL_COUPLES}
    long = {
        c: couple_looks.couples(seed, c, n_long, couple_looks.LONG_HISTORY_DAYS)
        for c in couple_looks.NULL_COUPLES
    }
    target = float(couple_scan.TARGET)
    out = {}
    for kind in kinds:
        rule = couple_looks.RULES[kind]
        short = {c: couple_looks.rule_statistics(g, rule) for c, g in null.items()}
        statistics = {c: couple_looks.rule_statistics(g, rule) for c, g in long.items()}

        def worst_long(per_log: float) -> float:
            base = looks.calibrate(_margins(short, per_log, rule.persistence_days), target)
            return max(
                looks.false_rate(m, base)
                for m in _margins(statistics, per_log, rule.persistence_days).values()
            )

        worst = {float(c): worst_long(float(c)) for c in RISE_STEPS}
        per_log = next((c for c, w in worst.items() if w <= target), min(worst, key=worst.get))
        margins = _margins(short, per_log, rule.persistence_days)
        base = {f"{t:g}": round(looks.calibrate(margins, t), 4) for t in couple_looks.TARGETS}
        out[kind] = {
            "threshold": f"base + rise_per_log ln((day + 1) / {couple_scan.RISE_FROM_DAY}) "
            f"from day {couple_scan.RISE_FROM_DAY}",
            "calibration": {
                "seed": seed,
                "couples_per_cohort": n,
                "two_year_couples_per_cohort": n_long,
                "cohorts": list(couple_looks.NULL_COUPLES),
                "looks": "every day of each history (120-180 days; two years for the rise), "
                + (
                    "the look 3 days earlier agreeing"
                    if rule.persistence_days
                    else "no confirming look"
                ),
            },
            "base": base,
            "rise_per_log": round(per_log, 2),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--couples", type=int, default=2000, help="couples in each null cohort")
    parser.add_argument(
        "--long-couples", type=int, default=1000, help="two-year couples in each null cohort"
    )
    parser.add_argument("--seed", type=int, default=couple_looks.CALIBRATION_SEED)
    parser.add_argument(
        "--rule",
        choices=list(couple_looks.RULES),
        action="append",
        help="calibrate this rule alone (repeatable); the others' thresholds are kept",
    )
    args = parser.parse_args(argv)
    out = calibrated(
        args.seed, args.couples, args.long_couples, tuple(args.rule or couple_looks.RULES)
    )
    if args.rule:
        out = {**json.loads(couple_scan.THRESHOLDS.read_text()), **out}
    couple_scan.THRESHOLDS.write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {
                kind: {"base": v["base"], "rise_per_log": v["rise_per_log"]}
                for kind, v in out.items()
            }
        )
    )
    return out


if __name__ == "__main__":
    main()
