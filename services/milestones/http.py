"""The milestones service's HTTP entrypoint."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from shared import accounts
from shared.db import unit_of_work
from shared.web import AUTH_DOC, Blueprint

from . import schemas, use_cases
from .tables import partners

blp = Blueprint(
    "milestones", __name__, url_prefix="/v1", description="Milestones and progress series"
)


def _uow():
    return unit_of_work(current_app.extensions["milestones"]["sessions"])


# An erased partner's token (still within its lifetime) is refused, as the journal and notify refuse it.
require_account = accounts.require_account(_uow, partners.c.erased)


@blp.route("/milestones")
class Milestones(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_account
    @blp.arguments(schemas.MilestoneQuery(), location="query")
    @blp.response(200, schemas.MilestonePage)
    @blp.alt_response(401, description="No valid token, or the account was erased")
    def get(self, query):
        """Milestones the caller may see, newest first

        Their own, their couple's, and their partner's own if the partner shares them. A couple's
        milestones are built only from entries their authors shared (`visibility: shared`), from both
        partners; a private entry counts only toward its author's own milestones. When a partner erases
        their account the couple ends: its milestones are removed for both, and the remaining partner
        keeps their own.
        """
        with _uow() as s:
            return use_cases.list_milestones(s, g.partner_id, query)


@blp.route("/milestones/<uuid:milestone_id>")
class OneMilestone(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_account
    @blp.response(200, schemas.Milestone)
    @blp.alt_response(401, description="No valid token, or the account was erased")
    @blp.alt_response(404, description="No such milestone the caller may see")
    def get(self, milestone_id):
        """One milestone, with its evidence

        A couple's evidence holds only numbers derived from shared entries: the windows compared, their
        counts or means, the effect size and the p-value; never a breakdown by ritual, week or partner.
        """
        with _uow() as s:
            return use_cases.get_milestone(s, g.partner_id, str(milestone_id))


@blp.route("/progress")
class ProgressView(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_account
    @blp.arguments(schemas.ProgressQuery(), location="query")
    @blp.response(200, schemas.Progress)
    @blp.alt_response(401, description="No valid token, or the account was erased")
    def get(self, query):
        """The caller's own weekly series, for charts

        From all of the caller's own entries, private and shared; never the partner's.
        """
        with _uow() as s:
            return use_cases.progress(s, g.partner_id, query)
