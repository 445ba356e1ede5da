"""A sample progress report (``make report-sample``) made from the simulator's histories.

One couple of the simulator's ``improving_couples`` cohort (their reflections,
check-ins and conflicts, and what each shared) joined, on the same dates, by
one partner of the ``improvers`` cohort for the first partner's own anxious
moments, their intensity and their independence activities (the couple
cohorts draw none of those). The days go into a milestones database of its
own (SQLite, in a temporary folder) as the service's daily aggregates; the
service's evaluation replays every day of the history, so the milestones are
the ones the service would have found; then the report is built and drawn
as ``GET /v1/report`` would answer the first partner, the second sharing
their milestones. Writes ``docs/report-sample.pdf`` and, with ``pdftoppm``
(poppler-utils) on the PATH, a picture of its first page,
``docs/report-sample.png``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import replace
from datetime import UTC, datetime, time
from pathlib import Path

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from services.milestones import evaluation, report, report_pdf
from services.milestones.rules import DayAggregate
from services.milestones.tables import days, metadata, partners, shared_days

from .cohorts import simulate_couple, simulate_partner

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _merged(couple_days, own_days) -> list[DayAggregate]:
    """The couple's days of the first partner with the same dates of an improver's own."""
    by_day = {d.day: d for d in couple_days}
    for d in own_days:
        c = by_day.get(d.day)
        by_day[d.day] = (
            d
            if c is None
            else replace(
                c,
                episodes=d.episodes,
                intensities=d.intensities,
                activities=d.activities,
            )
        )
    return sorted(by_day.values(), key=lambda d: d.day)


def _row(partner_id: str, d: DayAggregate) -> dict:
    detail = {
        "intensities": sorted(d.intensities),
        "communication": sorted(d.communication),
        "connection": sorted(d.connection),
        "understanding": sorted(d.understanding),
        "rituals": sorted(d.rituals),
    }
    entries = (
        d.episodes
        + len(d.communication)
        + d.weekly_check_ins
        + len(d.rituals)
        + d.activities
        + d.conflicts
    )
    return {
        "partner_id": partner_id,
        "local_date": d.day,
        "entries": max(entries, 1),
        "episodes": d.episodes,
        "detail": detail,
        "ritual_count": len(d.rituals),
        "ratings": len(d.communication),
        "activities": d.activities,
        "conflicts": d.conflicts,
        "conflicts_repaired_24h": d.conflicts_repaired_24h,
        "weekly_check_ins": d.weekly_check_ins,
    }


def sample(seed: int, couple_index: int, partner_index: int) -> tuple[dict, bytes]:
    """The report's content and its PDF."""
    couple = simulate_couple(seed, "improving_couples", couple_index)
    own = simulate_partner(seed, "improvers", partner_index)
    a_days = _merged(couple.a, [d for d in own.days if d.day <= couple.day(couple.n_days - 1)])
    last = couple.day(couple.n_days - 1)
    now = datetime.combine(last, time(12), UTC)
    a, b, couple_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/milestones.db")
        metadata.create_all(engine)
        with Session(engine) as s, s.begin():
            for pid, tz, shares in ((a, "Europe/Paris", False), (b, "Europe/Paris", True)):
                s.execute(
                    insert(partners).values(
                        id=pid,
                        couple_id=couple_id,
                        timezone=tz,
                        share_milestones_with_partner=shares,
                        erased=False,
                        replay_from=couple.day(0),
                    )
                )
            for table, pid, history in (
                (days, a, a_days),
                (days, b, couple.b),
                (shared_days, a, couple.a_shared),
                (shared_days, b, couple.b_shared),
            ):
                rows = [_row(pid, d) for d in history if d.has_entries]
                if rows:
                    s.execute(insert(table), rows)
        for pid in (a, b):
            with Session(engine) as s, s.begin():
                evaluation.evaluate_partner(s, pid, now, through=last)
        weeks = min(report.MAX_WEEKS, max(report.MIN_WEEKS, (couple.n_days + 6) // 7))
        with Session(engine) as s:
            content = report.build(s, a, weeks, now=now)
        engine.dispose()
    return content, report_pdf.render(content)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--couple", type=int, default=3, help="index in improving_couples")
    p.add_argument("--partner", type=int, default=8, help="index in improvers")
    p.add_argument("--out", type=Path, default=DOCS / "report-sample.pdf")
    args = p.parse_args(argv)
    content, pdf = sample(args.seed, args.couple, args.partner)
    args.out.write_bytes(pdf)
    print(
        f"{args.out}: {len(pdf)} bytes, {content['weeks']} weeks, "
        f"{sum(len(s['charts']) for s in content['sections'])} charts, "
        f"milestones: {[m['type'] for m in content['milestones']]}"
    )
    if shutil.which("pdftoppm"):
        stem = args.out.with_suffix("")
        subprocess.run(
            ["pdftoppm", "-png", "-r", "90", "-f", "1", "-l", "1", "-singlefile", args.out, stem],
            check=True,
        )
        print(f"{stem}.png")
    else:
        print("pdftoppm not found (poppler-utils): no picture of the first page")


if __name__ == "__main__":
    main()
