"""What a partner can read from the milestones service."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import pagination
from shared.db import utcnow
from shared.errors import Invalid, NotFound

from .local_time import local_today
from .tables import days, milestones, partners


def visible_milestones(s: Session, partner_id: str):
    """Own milestones, the couple's, and the partner's own when they share them: by their owners
    (ix_milestones_owner_key; a couple's own are the couple's key, a partner's their id)."""
    me = s.execute(select(partners).where(partners.c.id == partner_id)).first()
    if me is None or me.erased or not me.couple_id:
        return (
            milestones.c.owner_key == partner_id
        )  # nothing yet (or only their own), but a valid query
    sharing = select(partners.c.id).where(
        partners.c.couple_id == me.couple_id,
        partners.c.id != partner_id,
        partners.c.share_milestones_with_partner.is_(True),
        partners.c.erased.is_(False),
    )
    return milestones.c.owner_key.in_([partner_id, me.couple_id, sharing.scalar_subquery()])


def view(row) -> dict:
    return {
        k: row._mapping[k]
        for k in (
            "id",
            "type",
            "level",
            "couple_id",
            "partner_id",
            "achieved_at",
            "as_of",
            "headline",
            "evidence",
        )
    }


def list_milestones(s: Session, partner_id: str, query: dict) -> dict:
    stmt = select(milestones).where(visible_milestones(s, partner_id))
    return pagination.newest_first(
        s,
        stmt,
        milestones.c.achieved_at,
        milestones.c.id,
        query,
        lambda page: [view(r) for r in page],
    )


def get_milestone(s: Session, partner_id: str, milestone_id: str) -> dict:
    row = s.execute(
        select(milestones).where(milestones.c.id == milestone_id, visible_milestones(s, partner_id))
    ).first()
    if row is None:
        raise NotFound("No such milestone.")
    return view(row)


def _week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def progress(s: Session, partner_id: str, query: dict) -> dict:
    """The caller's own weekly series; a week with no logging has no value (not zero)."""
    metric = query["metric"]
    me = s.execute(select(partners.c.timezone).where(partners.c.id == partner_id)).first()
    out = {"metric": metric, "bucket": query.get("bucket", "week"), "points": []}
    asked_since, asked_until = query.get("since"), query.get("until")
    until = asked_until or local_today(me.timezone if me else None, utcnow())
    if asked_since and asked_since > until:  # name the field the client sent
        field = "until" if asked_until else "since"
        raise Invalid(
            f"The request has invalid fields: {field}",
            errors={field: ["since must not be after until (or today)."]},
        )
    since = (
        asked_since
        or s.execute(
            select(func.min(days.c.local_date)).where(days.c.partner_id == partner_id)
        ).scalar()
    )
    if since is None or since > until:
        return out  # nothing logged yet, or nothing in the range
    if (until - since).days > 3660:
        field = "since" if asked_since else "until"
        raise Invalid(
            f"The request has invalid fields: {field}",
            errors={field: ["At most ten years at a time."]},
        )
    rows = s.execute(
        select(days)
        .where(
            days.c.partner_id == partner_id, days.c.local_date >= since, days.c.local_date <= until
        )
        .order_by(days.c.local_date)
    ).all()
    first = _week_start(since)
    # Counted, not stepped past `until`: a step beyond 9999-12-31 would overflow.
    weeks: dict[date, list] = {
        first + timedelta(days=7 * i): [] for i in range((until - first).days // 7 + 1)
    }
    for r in rows:
        if since <= r.local_date <= until and r.entries > 0:
            weeks[_week_start(r.local_date)].append(r)
    for start, logged in weeks.items():
        out["points"].append(
            {
                "start": start,
                "value": _value(metric, logged) if logged else None,
                "logged_days": len(logged),
            }
        )
    return out


def _mean(values: list) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _value(metric: str, logged: list):
    if metric == "anxious_episodes":
        return sum(r.episodes for r in logged)
    if metric == "independence_activities":
        return sum(r.activities for r in logged)
    if metric == "rituals":
        return sum(r.ritual_count for r in logged)
    if metric == "communication":
        return _mean([v for r in logged for v in r.detail["communication"]])
    if metric == "episode_intensity":
        return _mean([v for r in logged for v in r.detail["intensities"]])
    raise ValueError(metric)
