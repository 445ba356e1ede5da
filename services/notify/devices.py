"""Phones registered for native push: removing them, and how one is shown.

A device goes when its login session ends, when its account is erased, when
its owner removes it, and when FCM says its token is no longer registered;
its pushes still waiting go with it (delivered and failed ones stay, as the
inbox's record)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .tables import deliveries, devices

CHANNEL = "push"  # their channel's kind (channels/push.py)
HINT_LENGTH = (
    6  # the token's last characters, to tell one phone from another: never the whole token
)


def hint(token: str) -> str:
    return "…" + token[-HINT_LENGTH:]


def forget(s: Session, where) -> int:
    """Remove the devices ``where`` selects, and their pushes not yet begun; how many devices went."""
    ids = s.execute(select(devices.c.id).where(where)).scalars().all()
    if not ids:
        return 0
    s.execute(
        delete(deliveries).where(
            deliveries.c.kind == CHANNEL,
            deliveries.c.target_id.in_(ids),
            deliveries.c.status == "pending",
        )
    )
    s.execute(delete(devices).where(devices.c.id.in_(ids)))
    return len(ids)
