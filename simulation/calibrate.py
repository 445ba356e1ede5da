"""Calibrate the thresholds of ``fewer_anxious_episodes`` on calibration seeds and write them where the rule reads them.

``python -m simulation.calibrate [--partners 2000]``: for each target
lifetime false rate, the smallest threshold base that keeps each null cohort
(steady, worsening, gappy; each over its usual 120-180 days and over two
years; seed 9101, never the reported seeds) at or under it, over every daily
look of each history.
"""

from __future__ import annotations

import argparse
import json

from services.milestones.rules import fewer_anxious_episodes as rule

from . import looks


def calibrated(seed: int, n: int) -> dict:
    null = {c: looks.rule_margins(g) for c, g in looks.null_partners(seed, n).items()}
    return {
        "rule": "fewer_anxious_episodes",
        "threshold": f"base + {rule.RISE_PER_LOG} ln((day + 1) / {rule.RISE_FROM_DAY}) from day {rule.RISE_FROM_DAY}",
        "calibration": {
            "seed": seed,
            "partners_per_cohort": n,
            "cohorts": list(null),
            "looks": f"every day of each history (120-180 days, or {looks.LONG_HISTORY_DAYS})",
        },
        "base": {f"{t:g}": round(looks.calibrate(null, t), 4) for t in looks.TARGETS},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=2000, help="partners in each null cohort")
    parser.add_argument("--seed", type=int, default=looks.CALIBRATION_SEED)
    args = parser.parse_args(argv)
    out = calibrated(args.seed, args.partners)
    rule.THRESHOLDS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["base"]))
    return out


if __name__ == "__main__":
    main()
