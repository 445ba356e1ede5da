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


class ReportQuery(ma.Schema):
    weeks = fields.Integer(
        load_default=12,
        validate=validate.Range(4, 52),
        metadata={"description": "how many weeks, the current one included (4 to 52)"},
    )


class ReportPoint(Point):
    value = fields.Float(
        allow_none=True,
        metadata={
            "description": "the week's figure, in the chart's unit; null where nothing was logged"
        },
    )
    logged_days = fields.Integer(metadata={"description": "days with anything logged that week"})


class ReportChart(ma.Schema):
    metric = fields.String(metadata={"example": "anxious_moments"})
    title = fields.String()
    unit = fields.String(metadata={"example": "per logged day"})
    points = fields.List(fields.Nested(ReportPoint), metadata={"description": "oldest week first"})


class ReportSection(ma.Schema):
    whose = fields.String(
        validate=validate.OneOf(["yours", "together", "partner"]),
        metadata={
            "description": "yours: all the caller's entries; together: both partners' shared entries, "
            "pooled; partner: the partner's shared entries, only if they share their milestones"
        },
    )
    title = fields.String()
    charts = fields.List(fields.Nested(ReportChart))


class ReportMilestone(ma.Schema):
    type = fields.String()
    level = fields.Integer()
    whose = fields.String(validate=validate.OneOf(["yours", "together", "partner"]))
    name = fields.String()
    reached_on = fields.Date(metadata={"description": "the owner's local date of the evidence"})
    evidence = fields.String(metadata={"description": "the periods compared, in plain words"})


class Report(ma.Schema):
    weeks = fields.Integer()
    first_day = fields.Date(metadata={"description": "the first week's Monday"})
    last_day = fields.Date(metadata={"description": "the last week's Sunday"})
    today = fields.Date(metadata={"description": "the caller's local date"})
    timezone = fields.String()
    sections = fields.List(fields.Nested(ReportSection))
    milestones = fields.List(
        fields.Nested(ReportMilestone),
        metadata={"description": "milestones reached in these weeks, oldest first"},
    )
    about = fields.List(fields.String(), metadata={"description": "what the figures are"})
