"""The milestones API's shapes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

METRICS = (
    "anxious_episodes",
    "communication",
    "episode_intensity",
    "independence_activities",
    "rituals",
)


class Milestone(ma.Schema):
    id = fields.String()
    type = fields.String(metadata={"example": "fewer_anxious_episodes"})
    level = fields.Integer()
    couple_id = fields.String(allow_none=True)
    partner_id = fields.String(
        allow_none=True, metadata={"description": "null for the couple's own"}
    )
    achieved_at = fields.AwareDateTime()
    as_of = fields.Date(metadata={"description": "the owner's local date the evidence is as of"})
    headline = fields.String()
    evidence = fields.Dict(
        metadata={
            "description": (
                "the windows compared, counts or means, effect size, p-value. A couple's (partner_id null) is derived "
                "from entries their authors shared alone, and holds no breakdown by ritual, week or partner"
            )
        }
    )


class MilestonePage(ma.Schema):
    items = fields.List(fields.Nested(Milestone))
    next_cursor = fields.String(allow_none=True)


class MilestoneQuery(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(max=200))


class ProgressQuery(ma.Schema):
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    bucket = fields.String(load_default="week", validate=validate.OneOf(["week"]))
    since = fields.Date(metadata={"description": "first local date (default: the first with data)"})
    until = fields.Date(metadata={"description": "last local date (default: today)"})

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        # Checked here too, so the answer does not depend on whether the caller has data yet.
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ma.ValidationError("Must not be before since.", field_name="until")


class Point(ma.Schema):
    start = fields.Date(metadata={"description": "the bucket's first local date (a Monday)"})
    value = fields.Float(allow_none=True, metadata={"description": "null where nothing was logged"})
    logged_days = fields.Integer()


class Progress(ma.Schema):
    metric = fields.String()
    bucket = fields.String()
    points = fields.List(fields.Nested(Point))
