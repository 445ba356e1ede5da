"""``./var`` (SQLite files with notes and password hashes, the signing key, the
embedded broker's messages) is its owner's alone: `tandem migrate` and `tandem
run` make it 0700 and what is in it 0600, whatever the umask they were given
and whatever modes an existing ``./var`` had."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TANDEM


def _open_to_others(var: Path) -> list[str]:
    """Every path under `var` (itself included) that its group or others may use."""
    loose = []
    for path in [var, *var.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
            loose.append(f"{path.relative_to(var.parent)} {oct(stat.S_IMODE(mode))}")
    return loose


@pytest.mark.e2e
def test_migrate_makes_a_private_var_and_mends_an_existing_one(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL") and k != "BROKER_URL"
    }
    env["TANDEM_VAR_DIR"] = str(tmp_path / "var")

    def migrate() -> None:
        done = subprocess.run(
            TANDEM + ["migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: os.umask(0o022),
        )  # what a shell usually gives
        assert done.returncode == 0, done.stderr

    migrate()
    var = tmp_path / "var"
    assert sorted(p.name for p in var.glob("*.sqlite3")) == [
        "journal.sqlite3",
        "milestones.sqlite3",
        "notify.sqlite3",
    ]
    assert _open_to_others(var) == []

    # A ./var made before (by an older Tandem, or by hand), open to all: mended.
    os.chmod(var, 0o755)
    for f in var.glob("*.sqlite3"):
        os.chmod(f, 0o644)
    (var / "keys").mkdir(mode=0o755)
    (var / "keys" / "notes.txt").write_text("")
    os.chmod(var / "keys" / "notes.txt", 0o666)
    assert _open_to_others(var)
    migrate()
    assert _open_to_others(var) == []
    assert (
        stat.S_IMODE((var / "journal.sqlite3").stat().st_mode) == 0o600
    )  # the owner keeps reading and writing


@pytest.mark.e2e
def test_tandem_run_keeps_var_and_all_its_processes_files_private(running):
    # The shared stack's ./var was made by the tests' own process (umask 022) and its SQLite files migrated
    # there before `tandem run` started; since then every process wrote its files (WAL, the embedded broker's
    # messages, metrics, the relays' sockets, the keys).
    var = Path(running.env["TANDEM_VAR_DIR"])
    assert any(var.rglob("*")), "the processes wrote nothing?"
    assert _open_to_others(var) == []
