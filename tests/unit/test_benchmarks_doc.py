"""BENCHMARKS.md is the last `make bench` table, each benchmark's method and the detection report:
`make bench` rewrites the table alone, and the file stays short enough to read."""

from __future__ import annotations

from pathlib import Path

from bench import run

DOC = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
DETECTION = ("<!-- detection:begin -->", "<!-- detection:end -->")


def _between(text: str, begin: str, end: str) -> str:
    assert text.count(begin) == 1 and text.count(end) == 1, (begin, end)
    return text[text.index(begin) : text.index(end) + len(end)]


def test_make_bench_rewrites_its_table_and_nothing_else(tmp_path):
    before = DOC.read_text()
    copy = tmp_path / "BENCHMARKS.md"
    copy.write_text(before)
    section = f"{run.BEGIN}\nLast `make bench`: a new table.\n{run.END}"
    run.write(section, copy)
    after = copy.read_text()
    assert _between(after, run.BEGIN, run.END) == section
    old_table = _between(before, run.BEGIN, run.END)
    assert after == before.replace(old_table, section)
    assert _between(after, *DETECTION) == _between(before, *DETECTION)


def test_the_document_has_its_parts_and_stays_under_15_kb():
    text = DOC.read_text()
    for heading in ("## The `make bench` table", "## Methods", "## Detection report"):
        assert heading in text, heading
    _between(text, run.BEGIN, run.END)
    _between(text, *DETECTION)
    assert len(text.encode()) < 15_000, (
        f"{len(text.encode())} bytes: keep it the table, methods, report"
    )
