"""The milestones service's HTTP entrypoint."""
from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from shared.db import unit_of_work
from shared.web import AUTH_DOC, Blueprint, require_auth

from . import schemas, use_cases

blp = Blueprint("milestones", __name__, url_prefix="/v1", description="Milestones and progress series")


def _uow():
    return unit_of_work(current_app.extensions["milestones"]["sessions"])


@blp.route("/milestones")
class Milestones(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_auth
    @blp.arguments(schemas.MilestoneQuery(), location="query")
    @blp.response(200, schemas.MilestonePage)
    @blp.alt_response(401, description="No valid token")
    def get(self, query):
        """Milestones the caller may see, newest first"""
        with _uow() as s:
            return use_cases.list_milestones(s, g.partner_id, query)


@blp.route("/milestones/<uuid:milestone_id>")
class OneMilestone(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_auth
    @blp.response(200, schemas.Milestone)
    @blp.alt_response(401, description="No valid token")
    @blp.alt_response(404, description="No such milestone the caller may see")
    def get(self, milestone_id):
        """One milestone, with its evidence"""
        with _uow() as s:
            return use_cases.get_milestone(s, g.partner_id, str(milestone_id))


@blp.route("/progress")
class ProgressView(MethodView):
    @blp.doc(**AUTH_DOC)
    @require_auth
    @blp.arguments(schemas.ProgressQuery(), location="query")
    @blp.response(200, schemas.Progress)
    @blp.alt_response(401, description="No valid token")
    def get(self, query):
        """The caller's own weekly series, for charts"""
        with _uow() as s:
            return use_cases.progress(s, g.partner_id, query)
