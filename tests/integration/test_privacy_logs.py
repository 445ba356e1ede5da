"""What the journal logs while serving real requests, error paths included."""

from __future__ import annotations

from tests.conftest import entry, make_couple


def test_logs_never_contain_notes_emails_or_tokens(backend, journal, capsys, monkeypatch):
    a, b, _ = make_couple(journal)
    secret = "my-secret-note-marmalade"
    token = a["headers"]["Authorization"].split()[1]
    journal.post("/v1/entries", headers=a["headers"], json=entry(note=secret))
    journal.post("/v1/tokens", json={"email": a["email"], "password": "wrong password!"})
    journal.post("/v1/entries", headers=a["headers"], json=entry(note=secret, intensity=99))
    journal.get("/v1/entries", headers={"Authorization": "Bearer " + token + "x"})

    def explode(*args, **kwargs):  # an unexpected failure while the note is in hand
        raise RuntimeError(f"boom for {a['email']} {secret}")

    monkeypatch.setattr("services.journal.use_cases.insert_if_new_with_event", explode)
    r = journal.post("/v1/entries", headers=a["headers"], json=entry(note=secret))
    assert r.status_code == 500
    logged = capsys.readouterr().err
    assert "unhandled_error" in logged  # the failure itself was logged
    for leak in (secret, a["email"], b["email"], token):
        assert leak not in logged
