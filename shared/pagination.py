"""Newest-first lists with an opaque cursor, as every service's API pages them
(``?limit=``, ``?cursor=``; ``{"items": [...], "next_cursor": ...}``)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session

from shared.errors import Invalid


def encode(at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    """(time, id) of the last item seen; a cursor this API did not give is a 422 naming it."""
    try:
        at, row_id = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
        )
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError
        # In UTC here: a time that leaves the calendar in UTC (0001-01-01T00:00+01:00) is a bad cursor, not a 500.
        return parsed.astimezone(UTC), str(uuid.UUID(row_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            "The cursor is not one this API gave.",
            errors={"cursor": ["Not a cursor this API gave."]},
        ) from None


def newest_first(
    s: Session, stmt, at_col, id_col, query: dict, view: Callable[[list], list]
) -> dict:
    """One page of `stmt`, ordered by (at_col, id_col) descending, after the query's cursor."""
    if query.get("cursor"):
        at, last = decode(query["cursor"])
        stmt = stmt.where(or_(at_col < at, and_(at_col == at, id_col < last)))
    limit = query.get("limit", 50)
    rows = s.execute(stmt.order_by(at_col.desc(), id_col.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    last_row = page[-1]._mapping if page else None
    return {
        "items": view(page),
        "next_cursor": encode(last_row[at_col], last_row[id_col]) if len(rows) > limit else None,
    }
