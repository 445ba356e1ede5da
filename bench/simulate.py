"""The simulator: synthetic partners with known truth, driven through the
running system's public API, and the milestones read back.

    python -m bench.simulate [--per-cohort N | --partners cohort:index,...] [--seed S]
                             [--order in-order|shuffled|reversed]
                             [--journal URL --milestones URL] [--report FILE] [--json]

Without URLs it starts `tandem run` itself (on whatever BROKER_URL and
*_DATABASE_URL say, or the embedded default in a temporary folder) and stops
it at the end. Each synthetic partner (simulation/cohorts.py: steady,
worsening, gappy, improvers) signs up, and their history, shifted to end
yesterday, is posted entry by entry: in order, or as an app that was offline
syncing late, shuffled or in reverse. The milestones service evaluates a
partner once their events have settled, replaying every day from the earliest
one the new data touched to today. The milestones each partner then sees are
compared with the truth, beside the single-look textbook test on the same
data, and with the pure rules (the functions the service runs) looked at
every day of the same history up to today (simulation/agreement.py): each
(type, level) and the day it was found must be the same. The report is
printed as Markdown (and written to FILE if given).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import requests

from services.milestones.rules import CALMER_EPISODES, FEWER_ANXIOUS_EPISODES, MORE_INDEPENDENCE
from simulation import agreement, cohorts

ZONE = ZoneInfo("Europe/Paris")
TYPES = (FEWER_ANXIOUS_EPISODES, CALMER_EPISODES, MORE_INDEPENDENCE)


def entries_of(partner: cohorts.SyntheticPartner, last_day) -> list[dict]:
    """The journal entries behind a synthetic history, dated to end on `last_day`."""
    shift = last_day - partner.day(partner.n_days - 1)
    out = []
    for d in partner.days:
        day = d.day + shift

        def at(hour: int, minute: int = 0) -> str:
            return datetime.combine(day, dtime(hour, minute), ZONE).isoformat()

        out.append({"kind": "daily_reflection", "occurred_at": at(21), "mood": 5})
        for i, intensity in enumerate(d.intensities):
            out.append(
                {
                    "kind": "anxious_episode",
                    "occurred_at": at(8 + (i % 12), i // 12),
                    "intensity": intensity,
                }
            )
        for i in range(d.activities):
            out.append(
                {
                    "kind": "independence_activity",
                    "occurred_at": at(18, i % 60),
                    "activity": "hobby",
                }
            )
    return [dict(e, id=str(uuid.uuid4())) for e in out]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class System:
    """`tandem run` in a temporary folder with free ports (unless URLs are given)."""

    def __init__(self, journal: str | None, milestones: str | None):
        self.proc = None
        if journal and milestones:
            self.journal, self.milestones = journal, milestones
            return
        ports = {name: _free_port() for name in ("JOURNAL", "MILESTONES", "NOTIFY")}
        env = dict(
            os.environ,
            TANDEM_VAR_DIR=tempfile.mkdtemp(prefix="tandem-sim-"),
            MILESTONES_SETTLE_SECONDS="2",
            WEB_CONCURRENCY="3",
            **{f"{k}_PORT": str(v) for k, v in ports.items()},
        )
        self.journal = f"http://127.0.0.1:{ports['JOURNAL']}"
        self.milestones = f"http://127.0.0.1:{ports['MILESTONES']}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if all(
                    requests.get(u + "/readyz", timeout=1).ok
                    for u in (self.journal, self.milestones)
                ):
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise SystemExit("tandem run exited before it was ready")
            time.sleep(0.3)
        raise SystemExit("tandem run was not ready within 90 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def drive(
    system: System, partner: cohorts.SyntheticPartner, order: str, last_day, seed: int
) -> dict:
    """Sign the partner up, post their history, and return what to read back with."""
    http = requests.Session()
    email = f"sim-{partner.cohort}-{partner.index}-{uuid.uuid4().hex[:6]}@example.com"
    r = http.post(
        system.journal + "/v1/accounts",
        json={
            "email": email,
            "password": "simulated partner",
            "display_name": "Sim",
            "timezone": "Europe/Paris",
        },
    )
    r.raise_for_status()
    token = http.post(
        system.journal + "/v1/tokens", json={"email": email, "password": "simulated partner"}
    ).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    bodies = entries_of(partner, last_day)
    if order == "shuffled":
        random.Random(seed * 1000 + partner.index).shuffle(bodies)
    elif order == "reversed":
        bodies.reverse()
    for body in bodies:
        r = http.post(system.journal + "/v1/entries", headers=headers, json=body)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/entries answered {r.status_code}: {r.text[:200]}")
    episodes = sum(1 for b in bodies if b["kind"] == "anxious_episode")
    return {
        "partner": partner,
        "headers": headers,
        "refresh_token": token["refresh_token"],
        "episodes": episodes,
        "entries": len(bodies),
        "expected": expected_milestones(partner, last_day),
    }


def expected_milestones(partner: cohorts.SyntheticPartner, last_day) -> agreement.Milestones:
    """The pure rules' milestones of the partner's history shifted to end on ``last_day``, looked at as the
    service looks at a history synced today: every day from the first logged day to today."""
    shift = last_day - partner.day(partner.n_days - 1)
    today = datetime.now(ZONE).date()
    return {
        k: d + shift for k, d in agreement.rule_milestones(partner.history, today - shift).items()
    }


def read_back(
    system: System, driven: dict, settle: float = 8.0, timeout: float = 600
) -> list[dict]:
    """Wait until the milestones service has every entry and its evaluation has
    settled (the partner's milestones are the rules' and have not changed for
    ``settle`` seconds; or, if they never are, until ``timeout``), then return
    the milestones the partner sees. Driving every partner may outlast an access
    token (15 minutes): each reads back with a fresh one from its session's refresh token."""
    http = requests.Session()
    fresh = http.post(
        system.journal + "/v1/tokens/refresh", json={"refresh_token": driven["refresh_token"]}
    )
    fresh.raise_for_status()
    driven = dict(driven, headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    deadline = time.monotonic() + timeout
    while True:
        pts = (
            http.get(
                system.milestones + "/v1/progress?metric=anxious_episodes",
                headers=driven["headers"],
            )
            .json()
            .get("points", [])
        )
        if sum(p["value"] or 0 for p in pts) == driven["episodes"]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the milestones service never saw every entry")
        time.sleep(0.5)
    last, stable_since = None, time.monotonic()
    while True:
        items = http.get(
            system.milestones + "/v1/milestones?limit=200", headers=driven["headers"]
        ).json()["items"]
        key = sorted((m["type"], m["level"], m["as_of"]) for m in items)
        if key != last:
            last, stable_since = key, time.monotonic()
        expected = agreement.service_milestones(items) == driven["expected"]
        if time.monotonic() - stable_since >= settle and (expected or time.monotonic() > deadline):
            return items
        time.sleep(0.5)


def agreement_of(results: list[dict]) -> dict:
    """Each partner's milestones from the service beside the pure rules' on the same history, looked at
    every day from its first to the day of the sync (:func:`expected_milestones`): the partners on which
    they agree, and every difference of the others."""
    disagree, reasons = [], {r: 0 for r in agreement.REASONS}
    for r in results:
        p = r["partner"]
        differences = agreement.compare(
            agreement.service_milestones(r["milestones"]), r["expected"]
        )
        if differences:
            disagree.append({"cohort": p.cohort, "index": p.index, "differences": differences})
            for d in differences:
                reasons[d["reason"]] += 1
    return {
        "partners": len(results),
        "agree": len(results) - len(disagree),
        "milestones": sum(len(r["expected"]) for r in results),
        "differences": reasons,
        "disagree": disagree,
    }


def report(
    results: list[dict], last_day, order: str, seed: int, partners: str, elapsed: float
) -> dict:
    out: dict = {
        "seed": seed,
        "partners": partners,
        "order": order,
        "entries_posted": sum(r["entries"] for r in results),
        "seconds": round(elapsed, 1),
        "types": {},
        "agreement": agreement_of(results),
    }
    for t in TYPES:
        tp = fp = fn = 0
        delays, textbook_tp, textbook_fp = [], 0, 0
        for r in results:
            p = r["partner"]
            firsts = [m for m in r["milestones"] if m["type"] == t and m["level"] == 1]
            detected = bool(firsts)
            true_change = t == FEWER_ANXIOUS_EPISODES and p.cohort == "improvers"
            shift = last_day - p.day(p.n_days - 1)
            if detected:
                as_of = (
                    datetime.fromisoformat(firsts[0]["as_of"]).date()
                    if "as_of" in firsts[0]
                    else None
                )
                change = p.day(p.change_day) + shift if p.change_day is not None else None
                if true_change and as_of and as_of >= change:
                    tp += 1
                    delays.append((as_of - change).days / 7)
                else:
                    fp += 1
            elif true_change:
                fn += 1
            if t == FEWER_ANXIOUS_EPISODES:
                tb = cohorts.textbook_single_look(p)
                if tb and tb["detected"]:
                    textbook_tp += true_change
                    textbook_fp += not true_change
        positives = tp + fn
        out["types"][t] = {
            "true_changes": positives,
            "detected": tp + fp,
            "true_detections": tp,
            "false_detections": fp,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / positives, 3) if positives else None,
            "found_within_8_weeks": sum(1 for d in delays if d <= 8),
            "median_weeks_to_milestone": round(statistics.median(delays), 1) if delays else None,
        }
        if t == FEWER_ANXIOUS_EPISODES:
            positives_tb = textbook_tp + textbook_fp
            out["types"][t]["textbook_single_look"] = {
                "true_detections": textbook_tp,
                "false_detections": textbook_fp,
                "precision": round(textbook_tp / positives_tb, 3) if positives_tb else None,
                "recall": round(textbook_tp / positives, 3) if positives else None,
            }
    return out


def markdown(rep: dict) -> str:
    lines = [
        f"Simulated through the public API: {rep['partners']}, seed {rep['seed']}, entries posted {rep['order']} "
        f"({rep['entries_posted']} entries, {rep['seconds']} s).",
        "",
        "| milestone | true changes | detections | false | precision | recall | within 8 weeks | "
        "median weeks to milestone | textbook single look: precision / recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, r in rep["types"].items():
        tb = r.get("textbook_single_look")
        tb_text = f"{tb['precision']} / {tb['recall']}" if tb else "n/a"
        lines.append(
            f"| {t} | {r['true_changes']} | {r['detected']} | {r['false_detections']} | {r['precision']} | "
            f"{r['recall']} | {r['found_within_8_weeks']} | {r['median_weeks_to_milestone']} | {tb_text} |"
        )
    a = rep["agreement"]
    lines += [
        "",
        f"The service beside the pure rules looked at every day of the same histories: they agree on "
        f"{a['agree']} of {a['partners']} partners ({a['milestones']} milestones the rules give).",
    ]
    if a["disagree"]:
        lines += [
            "",
            "| partner | milestone | level | the service, as of | the rules, as of | why |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['cohort']} {p['index']} | {d['type']} | {d['level']} | {d['service'] or '–'} | "
            f"{d['rules'] or '–'} | {d['reason']} |"
            for p in a["disagree"]
            for d in p["differences"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--per-cohort", type=int, default=10)
    ap.add_argument(
        "--partners", help="these partners instead, as cohort:index,... (e.g. improvers:2,steady:0)"
    )
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--order", choices=["in-order", "shuffled", "reversed"], default="shuffled")
    ap.add_argument("--journal")
    ap.add_argument("--milestones")
    ap.add_argument("--report")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    system = System(args.journal, args.milestones)
    t0 = time.monotonic()
    try:
        last_day = datetime.now(ZONE).date() - timedelta(days=1)
        if args.partners:
            partners = [
                cohorts.simulate_partner(args.seed, name, int(index))
                for name, _, index in (p.partition(":") for p in args.partners.split(","))
            ]
            described = "partners " + ", ".join(f"{p.cohort} {p.index}" for p in partners)
        else:
            partners = [
                p
                for name in cohorts.COHORTS
                for p in cohorts.cohort(args.seed, name, args.per_cohort)
            ]
            described = f"{args.per_cohort} partners per cohort ({', '.join(cohorts.COHORTS)})"
        with ThreadPoolExecutor(max_workers=4) as pool:
            driven = list(
                pool.map(lambda p: drive(system, p, args.order, last_day, args.seed), partners)
            )
            milestones = list(pool.map(lambda d: read_back(system, d), driven))
        results = [dict(d, milestones=m) for d, m in zip(driven, milestones)]
        rep = report(results, last_day, args.order, args.seed, described, time.monotonic() - t0)
    finally:
        system.stop()
    text = markdown(rep)
    print(json.dumps(rep, indent=2) if args.json else text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    return rep


if __name__ == "__main__":
    main()
