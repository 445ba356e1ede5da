"""Logs never carry a note, an email address or a token."""

from shared.logs import REDACTED, redact, scrub_text


def test_sensitive_keys_are_redacted_at_any_depth():
    out = redact(
        None,
        "info",
        {
            "event": "x",
            "note": "I cried",
            "ctx": {"email": "a@b.co", "token": "t"},
            "items": [{"password": "p"}],
        },
    )
    assert out["note"] == REDACTED and out["ctx"] == {"email": REDACTED, "token": REDACTED}
    assert out["items"] == [{"password": REDACTED}]


def test_emails_and_jwts_inside_free_text_are_scrubbed():
    text = "login failed for ana@example.com with eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"
    assert scrub_text(text) == f"login failed for {REDACTED} with {REDACTED}"


def test_an_apprise_url_it_logs_never_reaches_the_log():
    """Apprise logs the URLs it is given, and such a URL holds the service's token."""
    import logging

    from shared.logs import WithholdMessages

    secret = "tgram://123456:AAbbCCsecret/987"
    record = logging.LogRecord(
        "apprise", logging.ERROR, __file__, 1, "Unsupported URL: %s", (secret,), None
    )
    assert WithholdMessages().filter(record) and secret not in record.getMessage()
    mine = logging.LogRecord("delivery", logging.INFO, __file__, 1, "sent %s", ("x",), None)
    assert WithholdMessages().filter(mine) and mine.getMessage() == "sent x"
