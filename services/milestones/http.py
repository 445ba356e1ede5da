"""The milestones service's HTTP entrypoint."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask.views import MethodView

from shared import accounts
from shared.db import unit_of_work
from shared.errors import NotAcceptable
from shared.web import AUTH_DOC, Blueprint

from . import report, report_pdf, schemas, use_cases
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


_REPORT_TYPES = ["application/pdf", "application/json"]


@blp.route("/report")
class ReportView(MethodView):
    @blp.doc(
        **AUTH_DOC,
        # The JSON's schema, as the response below documents it, and the PDF beside it (the default).
        responses={
            "200": {
                "description": "The report: a PDF, or the same content as JSON",
                "content": {
                    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                },
            }
        },
    )
    @require_account
    @blp.arguments(schemas.ReportQuery(), location="query")
    @blp.response(200, schemas.Report)
    @blp.alt_response(401, description="No valid token, or the account was erased")
    @blp.alt_response(406, description="Neither application/pdf nor application/json is acceptable")
    def get(self, query):
        """A progress report for a therapist: a PDF (the default) or the same content as JSON

        The last `weeks` weeks (the current one included), Monday to Sunday in each partner's own local
        dates: a weekly chart of each metric with data, the days logged each week beside it (null, not
        zero, where nothing was logged), the milestones reached in those weeks in plain words, and a fixed
        note on what the figures are. The caller's own series come from all their entries; the couple's
        from both partners' shared entries, pooled; the other partner's own series only if they share
        their milestones, and then from their shared entries alone. `Accept: application/json` for JSON.
        """
        kind = (
            request.accept_mimetypes.best_match(_REPORT_TYPES)
            if request.accept_mimetypes
            else _REPORT_TYPES[0]
        )
        if kind is None:
            raise NotAcceptable(
                "This report is a PDF (application/pdf) or JSON (application/json)."
            )
        with _uow() as s:
            content = report.build(s, g.partner_id, query["weeks"])
        if kind == "application/json":
            return content
        return Response(
            report_pdf.render(content),
            mimetype="application/pdf",
            headers={"Content-Disposition": 'inline; filename="tandem-report.pdf"'},
        )
