"""Calibrate the thresholds of the couple rules on calibration seeds and write them where the rules read them.

``python -m simulation.calibrate_couples [--couples 2000]``: for each couple
rule and each target lifetime false rate, the smallest threshold base that
keeps each null couple cohort (steady, worsening, gappy; seed 9101, never
the reported seeds) at or under it, over every daily look of each history
(120-180 days), on the entries each couple shares.
"""
from __future__ import annotations

import argparse
import json

from services.milestones.rules import couple_scan

from . import couple_looks, looks


def calibrated(seed: int, n: int) -> dict:
    null = {c: couple_looks.couples(seed, c, n) for c in couple_looks.NULL_COUPLES}
    out = {}
    for kind, rule in couple_looks.RULES.items():
        margins = {c: couple_looks.rule_margins(group, rule) for c, group in null.items()}
        out[kind] = {
            "threshold": f"base + {couple_scan.RISE_PER_LOG} ln((day + 1) / {couple_scan.RISE_FROM_DAY}) "
                         f"from day {couple_scan.RISE_FROM_DAY}",
            "calibration": {"seed": seed, "couples_per_cohort": n, "cohorts": list(couple_looks.NULL_COUPLES),
                            "looks": "every day of each history (120-180 days), the look 3 days earlier agreeing"},
            "base": {f"{t:g}": round(looks.calibrate(margins, t), 4) for t in couple_looks.TARGETS},
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--couples", type=int, default=2000, help="couples in each null cohort")
    parser.add_argument("--seed", type=int, default=couple_looks.CALIBRATION_SEED)
    args = parser.parse_args(argv)
    out = calibrated(args.seed, args.couples)
    couple_scan.THRESHOLDS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({kind: v["base"] for kind, v in out.items()}))
    return out


if __name__ == "__main__":
    main()
