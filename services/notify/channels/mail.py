"""Email: text and HTML, the HTML with a small chart of each change it
celebrates (chart.py), inline; by the SMTP server of ``SMTP_URL``. Paced, and
governed by the partner's ``channels.email``. With no email channel of their
own, a partner's celebrations go to their account's address."""

from __future__ import annotations

import email.policy
import smtplib
import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage
from html import escape
from urllib.parse import urlparse

import structlog

from shared.config import smtp_url

from .. import celebrate, chart
from . import Channel, Message, SendFailed, SendUncertain

log = structlog.get_logger("delivery")


class Email(Channel):
    kind = "email"
    paced = True
    switch = "email"
    field = "address"

    def on(self) -> bool:
        return smtp_url() is not None  # SMTP_URL unset: no email

    def check(self, value: str, *, allow_private: bool) -> str:
        return value.strip().lower()

    def plan(self, recipient, targets) -> list[str | None]:
        return [t.id for t in targets] or ([None] if recipient.email else [])

    def send(self, message: Message, settings) -> None:
        if not settings.smtp_url:
            raise SendFailed("no SMTP_URL: email is off")
        to = message.target.address if message.target else message.account_email
        try:
            msg = email_message(
                to,
                message.title,
                message.body,
                message.delivery_id,
                message.charts,
                mail_from=settings.mail_from,
            )
        except ValueError as e:  # a header that could write others (see sound_headers)
            raise SendFailed(f"refused: {e}") from None
        smtp_send(settings.smtp_url, msg, settings.send_timeout_seconds)


def _pictures(charts: Sequence[dict], delivery_id: str) -> list[tuple[str, str, bytes]]:
    """(Content-ID, alt text, PNG) for each chart that can be drawn; numbers that
    are not a chart of an improvement are left out, never drawn."""
    out = []
    for i, numbers in enumerate(charts, 1):
        try:
            alt, png = chart.describe(numbers), chart.render(numbers)
        except ValueError:
            log.warning("chart left out", reason="not a chart of an improvement")
            continue
        out.append((f"chart-{i}.{delivery_id}@tandem", alt, png))
    return out


# Refuses a header value with a line break as it is set, and a defect as it is parsed.
HEADERS_POLICY = email.policy.SMTP.clone(raise_on_defect=True)


def sound_headers(msg: EmailMessage) -> None:
    """Refuse a header whose value, once its RFC 2047 encoded words are decoded,
    holds a control character: CPython before 3.11.10 / 3.12.5 writes such a
    value out with its line break raw (CVE-2024-6923), a header of the
    sender's choosing. Patched versions refuse it as well
    (``verify_generated_headers``); this holds on every version."""
    for name, value in msg.items():
        if any(unicodedata.category(c) == "Cc" for c in str(value)):
            raise ValueError(f"the {name} header holds a control character")


def email_message(
    to: str,
    title: str,
    body: str,
    delivery_id: str,
    charts: Sequence[dict] = (),
    *,
    mail_from: str,
) -> EmailMessage:
    """multipart/alternative: the text, and the HTML, which is multipart/related
    with a chart of each change (inline PNG, referenced by its Content-ID) in
    the order given."""
    pictures = _pictures(charts, delivery_id)
    msg = EmailMessage(policy=HEADERS_POLICY)
    msg["Subject"] = celebrate.subject_for(title)  # never a name (celebrate.py)
    msg["From"] = mail_from
    msg["To"] = to
    msg["Message-ID"] = f"<{delivery_id}@tandem>"
    sound_headers(msg)
    msg.set_content(f"{body}\n\nWith warmth,\nTandem")
    lines = "<br>".join(escape(line) for line in body.splitlines())
    images = "".join(
        f'<p><img src="cid:{cid}" alt="{escape(alt)}" width="{chart.WIDTH}" height="{chart.HEIGHT}" '
        f'style="max-width:100%;height:auto"></p>'
        for cid, alt, _ in pictures
    )
    msg.add_alternative(
        f"<html><body><h2>{escape(title)}</h2><p>{lines}</p>{images}"
        f"<p>With warmth,<br>Tandem</p></body></html>",
        subtype="html",
    )
    html = msg.get_payload()[1]
    for i, (cid, _, png) in enumerate(pictures, 1):
        html.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{cid}>",
            disposition="inline",
            filename=f"chart-{i}.png",
        )
    return msg


class _Tracked:
    """Knows when the whole message has been handed to the server (its
    terminating ``CRLF.CRLF`` sent): a reply lost after that leaves the outcome
    unknown, where a reply lost before it means nothing was delivered."""

    message_sent = False

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.message_sent = True


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTPS(_Tracked, smtplib.SMTP_SSL):
    pass


def smtp_send(smtp_url: str, msg: EmailMessage, timeout: float) -> None:
    """Hand ``msg`` to the SMTP server: SendFailed if it said no or was not reached (nothing
    delivered), SendUncertain if the whole message went out and no answer came back."""
    u = urlparse(smtp_url)
    cls = _SMTPS if u.scheme == "smtps" else _SMTP
    try:
        smtp = cls(
            u.hostname or "127.0.0.1",
            u.port or (465 if u.scheme == "smtps" else 25),
            timeout=timeout,
        )
    except (smtplib.SMTPException, OSError) as e:
        raise SendFailed(f"SMTP: {type(e).__name__}") from None
    try:
        if u.username:
            smtp.login(u.username, u.password or "")
        smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:  # the server answered, and it was no
        raise SendFailed(f"SMTP: {type(e).__name__} {e.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as e:
        if smtp.message_sent:
            raise SendUncertain(
                f"SMTP: no answer once the whole message was sent ({type(e).__name__}); "
                "it may have been delivered, so it is not repeated"
            ) from None
        raise SendFailed(f"SMTP: {type(e).__name__}") from None
    finally:
        try:  # accepted is accepted: a QUIT that fails changes nothing
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
