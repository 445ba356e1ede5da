"""The figures of ``fewer_anxious_episodes`` on held-out seeds, beside its oracles and the textbook single look.

``python -m simulation.report [--partners 2000] [--improvers 500]``: the
rule with the committed thresholds (``make calibrate``) and the oracle
(calibrated here on the same calibration seeds), each looked at every day of
every history: the share of null partners with any alarm (also over two
years of daily looks), improvers found within 8 weeks of the change and by
the end of the history, the median weeks to the milestone, at each false
target (the trade-off). Beside them: the oracle as the outside study defined
it (evidence against no change rather than a ratio of 0.8), the textbook
single look, and where the gap to the oracle comes from (the oracle's
statistic held to the rule's threshold; the rule's scan held to the
oracle's). Seed 2026; the calibration used seed 9101.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from services.milestones.rules import fewer_anxious_episodes as rule

from . import looks

PLAIN = replace(rule.SCAN, null_ratio=1.0)  # the outside study's oracle: evidence against no change


def _no_rise(look: np.ndarray) -> np.ndarray:
    return np.zeros(np.shape(look))


def study(
    partners: int, improvers: int, calibration_partners: int, seed: int = looks.HELD_OUT_SEED
) -> dict:
    null = {c: looks.partners(seed, c, partners) for c in looks.NULL_COHORTS}
    long = {
        c: looks.partners(seed, c, partners, looks.LONG_HISTORY_DAYS) for c in looks.NULL_COHORTS
    }
    improving = looks.partners(seed, "improvers", improvers)
    rule_null = {c: looks.rule_margins(g) for c, g in null.items()}
    rule_long = {c: looks.rule_margins(g) for c, g in long.items()}
    rule_imp = looks.rule_margins(improving)
    scan_unpriced = looks.rule_margins(improving, rise=_no_rise)
    cal = looks.CALIBRATION_SEED
    calibration_null = looks.null_partners(cal, calibration_partners)
    oracles = {}
    for name, settings in (("oracle", rule.SCAN), ("oracle, against no change", PLAIN)):
        oracles[name] = (
            {c: looks.oracle_margins(g, cal, settings) for c, g in calibration_null.items()},
            {c: looks.oracle_margins(g, seed, settings) for c, g in null.items()},
            {c: looks.oracle_margins(g, seed, settings) for c, g in long.items()},
            looks.oracle_margins(improving, seed, settings),
        )
    oracle_held = looks.oracle_margins(improving, seed, rule.SCAN, rule.rise, rule.PERSISTENCE_DAYS)
    rows = []
    for target in looks.TARGETS:
        b = rule.base(f"{target:g}")
        row = {
            "target": target,
            "rule": {
                "base": round(b, 3),
                "false": {c: looks.false_rate(m, b) for c, m in rule_null.items()},
                "false_two_years": {c: looks.false_rate(m, b) for c, m in rule_long.items()},
                **looks.found(rule_imp, b),
            },
        }
        for name, (calibration, held_out_null, held_out_long, imp) in oracles.items():
            ob = looks.calibrate(calibration, target)
            row[name] = {
                "base": round(ob, 3),
                "false": {c: looks.false_rate(m, ob) for c, m in held_out_null.items()},
                "false_two_years": {c: looks.false_rate(m, ob) for c, m in held_out_long.items()},
                **looks.found(imp, ob),
            }
        row["gap"] = {
            "oracle_at_the_rules_threshold": looks.found(oracle_held, b),
            "scan_at_the_oracles_threshold": looks.found(scan_unpriced, row["oracle"]["base"]),
        }
        rows.append(row)
    return {
        "seed": seed,
        "null_partners_per_cohort": partners,
        "improvers": improvers,
        "calibration_seed": cal,
        "rows": rows,
        "textbook": {
            "false": {c: looks.textbook(g)["false"] for c, g in null.items()},
            "false_two_years": {c: looks.textbook(g)["false"] for c, g in long.items()},
            **looks.textbook(improving),
        },
    }


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(report: dict) -> str:
    lines = [
        f"Held-out seed {report['seed']}: {report['null_partners_per_cohort']} null partners a cohort "
        f"(and as many over two years), {report['improvers']} improvers; calibrated on seed "
        f"{report['calibration_seed']}.",
        "",
        "| false target | rule | false % steady / worsening / gappy | over two years | "
        "found within 8 weeks | by the end | before the change | median weeks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for name in ("rule", "oracle", "oracle, against no change"):
            r = row[name]
            two = (
                " / ".join(pct(v) for v in r["false_two_years"].values())
                if "false_two_years" in r
                else "–"
            )
            lines.append(
                f"| {pct(row['target'])}% | {name} (base {r['base']}) | "
                f"{' / '.join(pct(v) for v in r['false'].values())} | {two} | {pct(r['within_8_weeks'])}% | "
                f"{pct(r['by_end'])}% | {pct(r['before_change'])}% | {r['median_weeks']} |"
            )
    t = report["textbook"]
    lines.append(
        f"| – | textbook single look (first 28 days against 28; at 8 weeks after the change, at the end) | "
        f"{' / '.join(pct(v) for v in t['false'].values())} | "
        f"{' / '.join(pct(v) for v in t['false_two_years'].values())} | {pct(t['within_8_weeks'])}% | "
        f"{pct(t['by_end'])}% | – | – |"
    )
    lines += [
        "",
        "| false target | rule / oracle within 8 weeks | by the end | against no change: within 8 weeks | "
        "by the end | the oracle at the rule's threshold | the scan at the oracle's threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        r, o, p, g = row["rule"], row["oracle"], row["oracle, against no change"], row["gap"]
        held, free = g["oracle_at_the_rules_threshold"], g["scan_at_the_oracles_threshold"]
        lines.append(
            f"| {pct(row['target'])}% | {r['within_8_weeks'] / o['within_8_weeks']:.2f} | "
            f"{r['by_end'] / o['by_end']:.2f} | {r['within_8_weeks'] / p['within_8_weeks']:.2f} | "
            f"{r['by_end'] / p['by_end']:.2f} | {pct(held['within_8_weeks'])}% / {pct(held['by_end'])}% | "
            f"{pct(free['within_8_weeks'])}% / {pct(free['by_end'])}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--partners", type=int, default=2000, help="null partners a cohort (held out)"
    )
    parser.add_argument("--improvers", type=int, default=500)
    parser.add_argument("--calibration-partners", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = study(args.partners, args.improvers, args.calibration_partners)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return report


if __name__ == "__main__":
    main()
