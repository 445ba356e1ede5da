"""`make bench`: every benchmark, on RabbitMQ and PostgreSQL, side by side
with its anchor in the same run; the table goes into BENCHMARKS.md (between
its ``bench:begin`` and ``bench:end`` marks) and every figure into
``var/bench/results.json``.

Usage: python -m bench.run [--quick]   (--quick: shorter runs, for trying it out)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench import setup

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


# The whole node of `tandem run` after the e2e spread load, sum of Pss, on the code before one supervisor
# forked every process (honcho kept a Python process for each; every milestones process loaded numpy and
# scipy; gunicorn loaded the app in each worker): commit 0cf38bc, 4 web workers a service, this machine.
NODE_PSS_BEFORE = {"pss_mib": 1800.8, "processes": 33}
NODE_PSS_GOAL_MIB = 500


def _node(e: dict) -> str:
    """The whole node's memory row: every process of `tandem run`, beside the code before."""
    node = e["node"]
    return (
        f"| Memory: the whole node of `tandem run` (every service and worker, {e['web']} a web service), "
        f"proportional set size after the end-to-end load (sum of `Pss` over its {node['processes']} processes, "
        f"shared pages divided among their users) | {node['pss_mib']} MiB | the code before (honcho's Python process "
        f"a child, numpy in every milestones process, no preload): {NODE_PSS_BEFORE['pss_mib']} MiB in "
        f"{NODE_PSS_BEFORE['processes']} processes | {round(node['pss_mib'] / NODE_PSS_BEFORE['pss_mib'], 2)} "
        f"| at most {NODE_PSS_GOAL_MIB} MiB: {_met(node['pss_mib'] <= NODE_PSS_GOAL_MIB)} |"
    )


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _ceiling(ing: dict) -> str:
    """The framework anchor's row: how close any journal can come on this stack, and the entry's own share."""
    return (
        f"| Ingest's ceiling: the journal's framework around the anchor's INSERT "
        f"(`bench/framework_app.py`); the journal against it "
        f"| {ing['framework_rps']} | bare Flask: {ing['anchor_rps']} "
        f"| {ing['framework_ratio']} (journal / ceiling: {ing['journal_to_framework']}) | – |"
    )


def _report_row(rep: dict) -> str:
    """The progress report's row: a year of weeks, PDF and JSON, against its goal of a second."""
    worst = max(rep["pdf_max_ms"], rep["json_max_ms"])
    return (
        f"| Report: `GET /v1/report?weeks=52` through the milestones app, {rep['days_of_history']} days of a "
        f"couple's entries ({rep['sections']} sections, {rep['charts']} charts, {rep['milestones']} milestone{'s' * (rep['milestones'] != 1)}; "
        f"PDF {round(rep['pdf_bytes'] / 1024)} KiB), p50 / max of {rep['repeat']} "
        f"| PDF {rep['pdf_p50_ms']} / {rep['pdf_max_ms']} ms; JSON {rep['json_p50_ms']} / {rep['json_max_ms']} ms "
        f"| – | – | under 1 s: {_met(worst < 1000)} |"
    )


def _offline_sync_row(sync: dict) -> str:
    """An offline phone's late sync: batches of 100 against the same entries as single POSTs."""
    return (
        f"| Offline sync: {sync['days']} days of both partners' history ({sync['entries']} entries, "
        f"shuffled, both phones at once) as `POST /v1/entries/batch` of {sync['batch']}, to the last "
        f"answer; and from the first request to the couple's final milestones visible in "
        f"`GET /v1/milestones` (median of {sync['rounds']} rounds each) "
        f"| {round(sync['batches_last_answer_s'] * 1000)} ms; milestones {sync['batches_milestones_s']} s "
        f"| single POSTs: {round(sync['singles_last_answer_s'] * 1000)} ms; milestones "
        f"{sync['singles_milestones_s']} s | {sync['speedup']} times faster to the last answer "
        f"| at least 10 times: {_met(sync['speedup'] >= 10)} |"
    )


def table(r: dict, meta: dict) -> str:
    ing, rel, con, gro = r["ingest"], r["relay"], r["consumer"], r["growth"]["results"]
    lat = ing["latency_at_half_journal_peak"]
    g2y = gro["2 years"]
    rows = [
        "| figure | Tandem | anchor, same run | ratio | goal |",
        "|---|---|---|---|---|",
        f"| Ingest: `POST /v1/entries` a second under gunicorn ({ing['workers']} workers x {ing['threads']} threads; "
        f"wrk, {ing['connections']} connections, {ing['rounds']} rounds of {ing['seconds']} s) | {ing['journal_rps']} "
        f"| bare Flask, one INSERT and COMMIT: {ing['anchor_rps']} | {ing['ratio']} | – (the goal is two workers "
        f"a core's, against the ceiling) |",
        _ceiling(ing),
    ]
    if (tuned := ing.get("two_processes_a_core")) is not None:
        # The goal's anchor: the journal's own ceiling on this stack; bare Flask's ratio is information.
        rows.append(
            f"| Ingest, the same with two workers a core ({tuned['workers']} workers x {tuned['threads']} "
            f"threads, every app) | {tuned['journal_rps']} | the journal's ceiling (`bench/framework_app.py`): "
            f"{tuned['framework_rps']}; bare Flask: {tuned['anchor_rps']} | {tuned['journal_to_framework']} "
            f"(to bare Flask: {tuned['ratio']}) | at least 0.9 of the ceiling: "
            f"{_met(tuned['journal_to_framework'] >= 0.9)} |"
        )
        rows.append(_ceiling(tuned))
    rows += [
        f"| Ingest latency at half the journal's peak ({lat['journal']['rate']} a second, open loop), p50 / p99 "
        f"| {lat['journal']['p50_ms']} / {lat['journal']['p99_ms']} ms | {lat['anchor']['p50_ms']} / "
        f"{lat['anchor']['p99_ms']} ms | – | – |",
        f"| Relay: committed outbox rows to messages confirmed by RabbitMQ, a second (batches of {rel['batch_size']}, "
        f"pipelined confirms) | {rel['relay_per_s']} | raw Kombu, confirms one at a time: {rel['anchor_per_s']} "
        f"| {rel['ratio']} | at least 3: {_met(rel['ratio'] >= 3)} |",
        f"| Consumer: events a second through the milestones consumer (prefetch {con['prefetch']}) "
        f"| {con['consumer_per_s']} | raw Kombu consume and ack: {con['anchor_per_s']} | {con['ratio']} | – |",
    ]
    for key in ("e2e", "e2e_lockstep"):
        if key not in r:
            continue
        e = r[key]
        how = (
            f"{e['couples']} couples' levels spread through the run"
            if e.get("schedule", "spread") == "spread"
            else f"{e['couples']} couples' levels all within {e['couples'] / e['rate']:.1f} s, twice"
        )
        rows.append(
            f"| End to end, `POST /v1/entries` to the inbox, {e['rate']} entries a second for "
            f"{e['seconds']} s, {how} (sent {e['achieved_rate']} a second; {e['measured']} celebrations"
            f"{', ' + str(e['missing']) + ' not there 2 minutes later' if e['missing'] else ''}), p50 / p95 / p99; "
            f"{e['cpu_cores_while_sending'].get('the whole machine (busy of all cores)')} of "
            f"{meta['cpus']} cores busy "
            f"| {e['p50_ms']} / {e['p95_ms']} / {e['p99_ms']} ms | – | – | p95 under 100 ms: "
            f"{_met(e['p95_ms'] is not None and e['p95_ms'] < 100)} |"
        )
    if (sync := r.get("offline_sync")) is not None:
        rows.append(_offline_sync_row(sync))
    rows.append(
        f"| Growth: a settled evaluation, 2 years of history against 2 months (one event: 2 years against 2 "
        f"months) | {g2y['evaluate_ms']} ms ({g2y['per_event_ms']} ms) | 2 months: "
        f"{gro['2 months']['evaluate_ms']} ms ({gro['2 months']['per_event_ms']} ms) "
        f"| {g2y['evaluate_ratio']} ({g2y['per_event_ratio']}) | at most 1.2: {_met(g2y['evaluate_ratio'] <= 1.2)} "
        f"({_met(g2y['per_event_ratio'] <= 1.2)} for one event) |"
    )
    g6m = gro["6 months"]
    rows.append(
        f"| Growth past the rules' start: a settled evaluation, 2 years against 6 months (every rule "
        f"tests by 6 months) "
        f"| {g2y['evaluate_ms']} ms | 6 months: {g6m['evaluate_ms']} ms "
        f"| {round(g2y['evaluate_ms'] / g6m['evaluate_ms'], 2)} | – |"
    )
    if (rep := r.get("report")) is not None:
        rows.append(_report_row(rep))
    if "node" in r.get("e2e", {}):
        rows.append(_node(r["e2e"]))
    # each process's resident set: var/bench/results.json ("memory"); the node's total is the row above
    head = (
        f"Last `make bench`: commit {meta['commit']}, {meta['cpus']} cores, load average "
        f"{meta['load_before']} before and {meta['load_after']} after; RabbitMQ and PostgreSQL on this machine. "
        "Every ratio is to an anchor measured in the same run, rounds alternating; how each is measured: "
        '"Methods" below.'
    )
    return f"{BEGIN}\n{head}\n\n" + "\n".join(rows) + f"\n{END}"


def write(section: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Put `section` between the table's marks; every other part of the file stays as it is."""
    text = path.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        first, _, rest = text.partition("\n")
        text = f"{first}\n\n## The `make bench` table\n\n{section}\n{rest}"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from bench import consumer, evaluation_growth, ingest, offline_sync, relay
    from bench import report as report_bench

    setup.servers()
    quick = args.quick
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        or "unknown",
        "load_before": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
    }
    results = {
        "relay": relay.main(
            ["--messages", "1000" if quick else "3000", "--rounds", "3" if quick else "5"]
        ),
        "consumer": consumer.main(
            ["--events", "500" if quick else "2000", "--rounds", "2" if quick else "3"]
        ),
        "ingest": ingest.main(
            ["--seconds", "4" if quick else "10", "--rounds", "2" if quick else "3"]
        ),
        "growth": evaluation_growth.main(["--repeat", "10" if quick else "40"]),
        "report": report_bench.main(["--repeat", "5" if quick else "20"]),
    }
    try:
        from bench import e2e
    except ImportError:
        e2e = None
    if e2e is not None:
        results["e2e"] = e2e.main(["--seconds", "10" if quick else "30", "--schedule", "spread"])
        results["e2e_lockstep"] = e2e.main(
            ["--seconds", "10" if quick else "30", "--schedule", "lockstep"]
        )
    results["offline_sync"] = offline_sync.main(["--rounds", "1" if quick else "3"])
    results["memory"] = {
        f"journal web ({results['ingest']['workers']} workers)": results["ingest"]["rss_mib"][
            "journal"
        ],
        "anchor web": results["ingest"]["rss_mib"]["anchor"],
        **results.get("e2e", {}).get("rss_mib", {}),
    }
    meta["load_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, **results}, indent=2, default=str))
    section = table(results, meta)
    write(section)
    print(section)


if __name__ == "__main__":
    main()
