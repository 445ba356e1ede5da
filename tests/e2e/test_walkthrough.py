"""`make run` as a new user runs it: the README's walk-through, word for word,
against every service started as real processes (gunicorn and workers)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, TANDEM
from tests.support import wait_until


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- walkthrough -->\s*```sh\n(.*?)```", readme, re.S)
    assert blocks, "README.md has a walk-through"
    return "\n".join(blocks)


def check_walkthrough_output(out: str, where: Path) -> None:
    """What the walk-through prints, step by step, and the report it saves in `where`."""
    assert (
        '"display_name": "Ben"' in out and '"display_name": "Ana"' in out
    )  # step 3: both partners
    assert "\n200\n" in out  # step 6: the retried entry is the same entry
    assert '"status": 404' in out  # step 7: Ana's private moment is hidden from Ben
    assert '"intensity": [' in out and '"status": 422' in out  # step 8 names the field
    assert (
        '"items": []' in out and '"metric": "anxious_episodes"' in out
    )  # milestones: none yet; a chart
    assert (
        out.count('"token_hint": "…XKqpc8"') == 2 and '"this_session": true' in out
    )  # her phone, listed
    assert "APA91b" not in out  # the token is never shown again
    assert '"device_name": "phone"' in out and '"current": true' in out  # step 9: refreshed, listed
    assert "\n204\n401\n" in out  # step 10: logged out, the refresh token refused
    assert (where / "tandem-report.pdf").read_bytes().startswith(b"%PDF-")  # the report
    assert "%PDF-" in out and '"weeks": 12' in out  # ...and the same content as JSON
    batch = json.loads(out[out.rindex('[\n  {\n    "id": "0b6f1c52') :].split("\n]\n")[0] + "]")
    assert [r["status"] for r in batch] == [201, 201, 200, 422]  # step 11, entry by entry
    assert list(batch[3]["errors"]) == ["connection"] and batch[0]["errors"] is None


class LineReader:
    """Collects a pipe's lines from a thread, so waiting never blocks on a read."""

    def __init__(self, pipe):
        import threading

        self.lines: list[str] = []
        threading.Thread(
            target=lambda: [self.lines.append(line) for line in pipe], daemon=True
        ).start()


@pytest.mark.e2e
def test_readme_walkthrough_works_word_for_word(running, tmp_path):
    base, env = running.urls["journal"], running.env
    watcher = subprocess.Popen(
        TANDEM + ["watch"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        watched, said = LineReader(watcher.stdout), LineReader(watcher.stderr)
        wait_until(
            lambda: any("watching" in line for line in said.lines), what="the watcher to start"
        )
        script = (
            walkthrough_script()
            .replace("http://127.0.0.1:8001", base)
            .replace("http://127.0.0.1:8002", running.urls["milestones"])
            .replace("http://127.0.0.1:8003", running.urls["notify"])
        )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,  # where the report is saved
        )
        assert done.returncode == 0, done.stderr
        check_walkthrough_output(done.stdout, tmp_path)

        # What the walk-through claims, checked through the API itself.
        token = requests.post(
            base + "/v1/tokens", json={"email": "ben@example.com", "password": "another passphrase"}
        ).json()["access_token"]
        items = requests.get(
            base + "/v1/entries", headers={"Authorization": f"Bearer {token}"}
        ).json()["items"]
        assert sorted(i["kind"] for i in items) == [
            "daily_reflection",
            "healing_conversation",
            "ritual",
        ]

        def events():
            return [json.loads(line) for line in list(watched.lines)]

        def seen_all():
            types = [e["type"] for e in events()]
            return (
                types.count("journal.entry.recorded") == 6  # four, then the batch's two new
                and types.count("journal.partner.registered") == 2
                and "journal.couple.partnered" in types
            )

        wait_until(seen_all, timeout=30, what="the walk-through's events on the exchange")
        assert not any("note" in e["data"] for e in events())
        assert all("two hours" not in json.dumps(e) for e in events())
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
