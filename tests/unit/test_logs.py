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


def _rendered(console: bool, *, exc_info=None) -> str:
    import logging

    from shared.logs import formatter

    record = logging.LogRecord(
        "journal", logging.ERROR, __file__, 1, "entry refused for %s", ("ana@example.com",), None
    )
    record.exc_info = exc_info
    return formatter(console=console).format(record)


def test_a_person_at_a_terminal_reads_one_coloured_line_an_event_redacted_like_json():
    import json
    import sys

    try:
        raise ValueError("the note said: I cried")  # an exception's message may quote anything
    except ValueError:
        exc_info = sys.exc_info()
    line = _rendered(True, exc_info=exc_info)
    assert "\n" not in line and "\x1b[" in line  # one line, coloured
    assert "entry refused for [redacted]" in line and "ana@example.com" not in line
    assert "error" in line and "ValueError" in line and "test_logs.py" in line
    assert "I cried" not in line
    as_json = json.loads(_rendered(False, exc_info=exc_info))
    assert (
        as_json["event"] == "entry refused for [redacted]" and as_json["exception"] == "ValueError"
    )
    assert "I cried" not in json.dumps(as_json)


def test_the_format_is_the_terminals_unless_chosen(monkeypatch):
    import io

    from shared import logs

    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.delenv("TANDEM_LOG_FORMAT", raising=False)
    assert not logs.console_wanted()
    monkeypatch.setenv("TANDEM_LOG_FORMAT", "console")
    assert logs.console_wanted()
    monkeypatch.setenv("TANDEM_LOG_FORMAT", "json")
    assert not logs.console_wanted()
