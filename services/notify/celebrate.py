"""What a celebration says: pure functions of the milestone and the recipient.

Warm and specific, in the owner's own numbers (the milestone's headline);
never a comparison between the partners, never a decline, and nothing of the
other partner's entries beyond what the owner chose to share.

A display name comes from an event anyone on the broker could publish: one
that could write an email header (control characters, RFC 2047 encoded words
``=?...?=``) is never used (:func:`display_name`), and no name ever goes into
an email's Subject (:func:`subject_for`).
"""

from __future__ import annotations

import unicodedata

COUPLE_TITLE = "Something to celebrate together"
OWN_TITLE = "Something to celebrate"
SHARED_SUBJECT = "Your partner shared a milestone with you"
FOLDED_TITLE = "{count} things to celebrate"
NAME_LENGTH = 80  # the column's width


def display_name(raw: object) -> str | None:
    """The name to show, or None (then "Your partner") if it could be read as
    anything but a name: control or format characters (a line break), an
    encoded word's ``=?``, or longer than a name is."""
    if not isinstance(raw, str):
        return None
    name = raw.strip(" ")
    if not name or len(name) > NAME_LENGTH or "=?" in name:
        return None
    if any(
        unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp") for c in name
    ):
        return None
    return name


def title_for(milestone: dict, recipient_id: str, owner_name: str | None) -> str:
    owner = milestone.get("partner_id")
    if owner is None:
        return COUPLE_TITLE
    if str(owner) == recipient_id:
        return OWN_TITLE
    return f"{owner_name or 'Your partner'} shared a milestone with you"


def subject_for(title: str) -> str:
    """An email's Subject: the title if it is one of Tandem's own texts, else
    (a partner's milestone, which names them) the same news without the name."""
    count = title.split(" ", 1)[0]
    if title in (OWN_TITLE, COUPLE_TITLE) or (
        count.isdecimal() and title == FOLDED_TITLE.format(count=count)
    ):
        return title
    return SHARED_SUBJECT


def body_for(milestone: dict) -> str:
    return milestone["headline"]
