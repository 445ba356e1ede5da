"""What a celebration says: pure functions of the milestone and the recipient.

Warm and specific, in the owner's own numbers (the milestone's headline);
never a comparison between the partners, never a decline, and nothing of the
other partner's entries beyond what the owner chose to share.
"""
from __future__ import annotations

COUPLE_TITLE = "Something to celebrate together"
OWN_TITLE = "Something to celebrate"


def title_for(milestone: dict, recipient_id: str, owner_name: str | None) -> str:
    owner = milestone.get("partner_id")
    if owner is None:
        return COUPLE_TITLE
    if str(owner) == recipient_id:
        return OWN_TITLE
    return f"{owner_name or 'Your partner'} shared a milestone with you"


def body_for(milestone: dict) -> str:
    return milestone["headline"]
