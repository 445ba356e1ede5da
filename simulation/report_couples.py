"""The figures of the couple rules on held-out seeds, beside their oracles and the textbook single look.

``python -m simulation.report_couples [--couples 2000] [--improvers 500]
[--long-couples 2000] [--rule KIND]``: each couple rule (or the one named) with the committed thresholds
(``make calibrate-couples``) and its oracle (calibrated here on the same
calibration seed), each looked at every day of every history, on the entries
each couple shares: the share of null couples with any alarm (also over two
years of daily looks), improving couples found within 8 weeks of the change
and by the end of the history, the median weeks to the milestone, and the
textbook single look on the same couples. Seed 2026; the calibration used
seed 9101.
"""

from __future__ import annotations

import argparse
import json

from . import couple_looks as cl
from . import looks


def study(
    n: int,
    improvers: int,
    calibration_couples: int,
    long_couples: int,
    seed: int = cl.HELD_OUT_SEED,
    kinds: tuple[str, ...] = tuple(cl.RULES),
) -> dict:
    null = {c: cl.couples(seed, c, n) for c in cl.NULL_COUPLES}
    long = (
        {c: cl.couples(seed, c, long_couples, cl.LONG_HISTORY_DAYS) for c in cl.NULL_COUPLES}
        if long_couples
        else {}
    )
    improving = cl.couples(seed, cl.IMPROVING, improvers)
    cal = cl.CALIBRATION_SEED
    oracle_cal_couples = {c: cl.couples(cal, c, calibration_couples) for c in cl.NULL_COUPLES}
    report = {
        "seed": seed,
        "null_couples_per_cohort": n,
        "long_couples_per_cohort": long_couples,
        "improvers": improvers,
        "calibration_seed": cal,
        "rules": {},
    }
    for kind in kinds:
        rule = cl.RULES[kind]
        rule_null = {c: cl.rule_margins(g, rule) for c, g in null.items()}
        rule_long = {c: cl.rule_margins(g, rule) for c, g in long.items()}
        rule_imp = cl.rule_margins(improving, rule)
        oracle_cal = {c: cl.oracle_margins(g, cal, rule) for c, g in oracle_cal_couples.items()}
        oracle_null = {c: cl.oracle_margins(g, seed, rule) for c, g in null.items()}
        oracle_imp = cl.oracle_margins(improving, seed, rule)
        rows = []
        for target in cl.TARGETS:
            b = rule.base(f"{target:g}")
            ob = looks.calibrate(oracle_cal, target)
            rows.append(
                {
                    "target": target,
                    "rule": {
                        "base": round(b, 3),
                        "false": {c: looks.false_rate(m, b) for c, m in rule_null.items()},
                        "false_two_years": {
                            c: looks.false_rate(m, b) for c, m in rule_long.items()
                        },
                        **looks.found(rule_imp, b),
                    },
                    "oracle": {
                        "base": round(ob, 3),
                        "false": {c: looks.false_rate(m, ob) for c, m in oracle_null.items()},
                        **looks.found(oracle_imp, ob),
                    },
                }
            )
        textbook = {
            "false": {c: cl.textbook_found(g, kind) for c, g in null.items()},
            "within_8_weeks": cl.textbook_found(improving, kind, 8),
            "by_end": cl.textbook_found(improving, kind),
        }
        report["rules"][kind] = {
            "rows": rows,
            "textbook_single_look": textbook,
            "rise_per_log": rule.calibrated()["rise_per_log"],
        }
    return report


def table(report: dict) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    lines = [
        f"Held-out seed {report['seed']}: {report['null_couples_per_cohort']} null couples a cohort "
        f"({report['long_couples_per_cohort']} a cohort over two years), {report['improvers']} improving "
        f"couples; calibrated on seed {report['calibration_seed']}; shared entries only."
    ]
    for kind, r in report["rules"].items():
        lines += [
            "",
            f"`{kind}` (the threshold rising {r['rise_per_log']} ln((day + 1) / 91) from day 91)",
            "",
            "| false target | rule | false % steady / worsening / gappy | over two years | "
            "found within 8 weeks | by the end | before the change | median weeks |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            for name in ("rule", "oracle"):
                x = row[name]
                two = (
                    " / ".join(pct(v) for v in x["false_two_years"].values())
                    if x.get("false_two_years")
                    else "–"
                )
                lines.append(
                    f"| {pct(row['target'])}% | {name} (base {x['base']}) | "
                    f"{' / '.join(pct(v) for v in x['false'].values())} | {two} | "
                    f"{pct(x['within_8_weeks'])}% | {pct(x['by_end'])}% | {pct(x['before_change'])}% | "
                    f"{x['median_weeks']} |"
                )
        t = r["textbook_single_look"]
        lines.append(
            f"| – | textbook single look | {' / '.join(pct(v) for v in t['false'].values())} | – | "
            f"{pct(t['within_8_weeks'])}% (8 weeks after) | {pct(t['by_end'])}% (at the end) | – | – |"
        )
        for row in r["rows"]:
            x, o = row["rule"], row["oracle"]
            early, late = (x[k] / max(o[k], 1e-9) for k in ("within_8_weeks", "by_end"))
            lines.append(
                f"\nAt {pct(row['target'])}%: the rule finds {early:.2f} of the oracle's within 8 weeks, "
                f"{late:.2f} by the end."
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--couples", type=int, default=2000, help="null couples a cohort (held out)"
    )
    parser.add_argument("--improvers", type=int, default=500)
    parser.add_argument("--calibration-couples", type=int, default=2000)
    parser.add_argument(
        "--long-couples", type=int, default=2000, help="null couples a cohort over two years"
    )
    parser.add_argument(
        "--rule",
        choices=list(cl.RULES),
        action="append",
        help="report this rule alone (repeatable)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = study(
        args.couples,
        args.improvers,
        args.calibration_couples,
        args.long_couples,
        kinds=tuple(args.rule or cl.RULES),
    )
    print(json.dumps(report, indent=2) if args.json else table(report))
    return report


if __name__ == "__main__":
    main()
