"""The figures of ``fewer_anxious_episodes`` on held-out seeds, beside the oracle's.

``python -m simulation.report [--partners 2000] [--improvers 500]``: the
rule with the committed thresholds (``make calibrate``) and the oracle
(calibrated here on the same calibration seeds), each looked at every day of
every history: the share of null partners with any alarm (also over two
years of daily looks), improvers found within 8 weeks of the change and by
the end of the history, the median weeks to the milestone. Seed 2026; the
calibration used seed 9101.
"""
from __future__ import annotations

import argparse
import json

from services.milestones.rules import fewer_anxious_episodes as rule

from . import looks


def study(partners: int, improvers: int, calibration_partners: int, seed: int = looks.HELD_OUT_SEED) -> dict:
    null = {c: looks.partners(seed, c, partners) for c in looks.NULL_COHORTS}
    long = {c: looks.partners(seed, c, partners, looks.LONG_HISTORY_DAYS) for c in looks.NULL_COHORTS}
    improving = looks.partners(seed, "improvers", improvers)
    rule_null = {c: looks.rule_margins(g) for c, g in null.items()}
    rule_long = {c: looks.rule_margins(g) for c, g in long.items()}
    rule_imp = looks.rule_margins(improving)
    cal = looks.CALIBRATION_SEED
    oracle_cal = {c: looks.oracle_margins(looks.partners(cal, c, calibration_partners), cal)
                  for c in looks.NULL_COHORTS}
    oracle_null = {c: looks.oracle_margins(g, seed) for c, g in null.items()}
    oracle_imp = looks.oracle_margins(improving, seed)
    rows = []
    for target in looks.TARGETS:
        b = rule.base(f"{target:g}")
        ob = looks.calibrate(oracle_cal, target)
        rows.append({
            "target": target,
            "rule": {"base": round(b, 3),
                     "false": {c: looks.false_rate(m, b) for c, m in rule_null.items()},
                     "false_two_years": {c: looks.false_rate(m, b) for c, m in rule_long.items()},
                     **looks.found(rule_imp, b)},
            "oracle": {"base": round(ob, 3), "false": {c: looks.false_rate(m, ob) for c, m in oracle_null.items()},
                       **looks.found(oracle_imp, ob)},
        })
    return {"seed": seed, "null_partners_per_cohort": partners, "improvers": improvers,
            "calibration_seed": cal, "rows": rows}


def table(report: dict) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    lines = [f"Held-out seed {report['seed']}: {report['null_partners_per_cohort']} null partners a cohort "
             f"(and as many over two years), {report['improvers']} improvers; calibrated on seed "
             f"{report['calibration_seed']}.", "",
             "| false target | rule | false % steady / worsening / gappy | over two years | "
             "found within 8 weeks | by the end | before the change | median weeks |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for name in ("rule", "oracle"):
            r = row[name]
            two = " / ".join(pct(v) for v in r["false_two_years"].values()) if "false_two_years" in r else "–"
            lines.append(f"| {pct(row['target'])}% | {name} (base {r['base']}) | "
                         f"{' / '.join(pct(v) for v in r['false'].values())} | {two} | {pct(r['within_8_weeks'])}% | "
                         f"{pct(r['by_end'])}% | {pct(r['before_change'])}% | {r['median_weeks']} |")
    for row in report["rows"]:
        r, o = row["rule"], row["oracle"]
        lines.append(f"\nAt {pct(row['target'])}%: the rule finds {r['within_8_weeks'] / o['within_8_weeks']:.2f} of "
                     f"the oracle's within 8 weeks, {r['by_end'] / o['by_end']:.2f} by the end.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=2000, help="null partners a cohort (held out)")
    parser.add_argument("--improvers", type=int, default=500)
    parser.add_argument("--calibration-partners", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = study(args.partners, args.improvers, args.calibration_partners)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return report


if __name__ == "__main__":
    main()
