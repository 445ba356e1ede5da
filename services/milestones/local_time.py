"""A partner's own day: their time zone's date, an unknown zone read as UTC.
Apart from ``evaluation`` so that what reads a date (the HTTP API) loads
none of the rules' numerical libraries."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_today(tz_name: str | None, now: datetime) -> date:
    return now.astimezone(zone(tz_name)).date()
