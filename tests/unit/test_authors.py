"""The journal's memory of entry authors: bounded, the least recently used forgotten first."""

from __future__ import annotations

from services.journal.use_cases import Authors


def test_authors_are_remembered_up_to_a_bound_the_least_recently_used_forgotten_first(
    monkeypatch,
):
    monkeypatch.setattr(Authors, "REMEMBERED", 3)
    authors = Authors()
    for pid in ("a", "b", "c"):
        authors.remember(pid, "Europe/Paris", None)
    assert authors.get("a") == ("Europe/Paris", None)  # a records again: used most recently
    authors.remember("d", "America/New_York", "couple-1")
    assert authors.get("b") is None
    assert [authors.get(p) for p in ("a", "c", "d")] == [
        ("Europe/Paris", None),
        ("Europe/Paris", None),
        ("America/New_York", "couple-1"),
    ]


def test_a_forgotten_author_is_read_again():
    authors = Authors()
    authors.remember("a", "Europe/Paris", None)
    authors.forget("a")
    authors.forget("never-known")  # nothing to forget: no error
    assert authors.get("a") is None
