"""Logs never carry a note, an email address or a token."""
from shared.logs import REDACTED, redact, scrub_text


def test_sensitive_keys_are_redacted_at_any_depth():
    out = redact(None, "info", {"event": "x", "note": "I cried", "ctx": {"email": "a@b.co", "token": "t"},
                                "items": [{"password": "p"}]})
    assert out["note"] == REDACTED and out["ctx"] == {"email": REDACTED, "token": REDACTED}
    assert out["items"] == [{"password": REDACTED}]


def test_emails_and_jwts_inside_free_text_are_scrubbed():
    text = "login failed for ana@example.com with eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"
    assert scrub_text(text) == f"login failed for {REDACTED} with {REDACTED}"
