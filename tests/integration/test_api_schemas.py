"""Each service against its own OpenAPI document (schemathesis): generated
requests, valid and invalid, never get a server error, and every response
(status, content type, headers, body) is one the document describes.

Requests carry a real partner's token, so the checks reach past
authentication. Schema-valid requests that the service refuses for a reason
the document cannot express (a time zone name that is not in the IANA
database, a date range the wrong way round) are 4xx by design, so the
"schema-valid data is accepted" check is left out; every other check runs.
"""

from __future__ import annotations

import importlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import make_couple, new_id

EXAMPLES = 40  # per operation


def _last(op) -> tuple[bool, str]:
    # Erasing the account ends the session every other operation uses: run it last.
    return (op.method.upper() == "DELETE" and op.path == "/v1/accounts/me", op.label)


@pytest.mark.parametrize("service", ["journal", "milestones", "notify"])
def test_every_operation_keeps_to_its_document(backend, service, monkeypatch):
    from services.journal import http as journal_http
    from services.journal.app import create_app as journal_app

    # A reset request is answered no sooner than a fixed time (test_sessions checks it): here only
    # what the answers say is checked, and 40 of them would wait 10 s for nothing.
    monkeypatch.setattr(journal_http, "RESET_ANSWER_SECONDS", 0.0)

    journal = journal_app()
    a, _, _ = make_couple(journal.test_client())
    app = (
        journal
        if service == "journal"
        else importlib.import_module(f"services.{service}.app").create_app()
    )
    app.testing = True
    headers = a["headers"]
    if service == "notify":  # a token of a login session, as a phone registering for push holds
        from shared import auth

        token = auth.TokenIssuer(auth.private_key_pem(backend.var_dir), 3600).issue(
            a["id"], session_id=new_id()
        )
        headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=_last)
    # The live stream never ends, so a generated request would never return; tests/e2e covers it.
    operations = [op for op in operations if not op.path.endswith("/stream")]
    assert len(operations) >= 3
    failures, statuses = [], set()
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call_and_validate(
                headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance]
            )
            statuses.add((op.label, response.status_code))

        try:
            check()
        except (
            BaseException
        ) as e:  # schemathesis raises an exception group naming every failure found
            if isinstance(e, KeyboardInterrupt):
                raise
            failures.append(f"{op.label}:\n{e}")
    assert not failures, "\n\n".join(failures)
    # the token worked: some operation past authentication answered 2xx
    assert any(200 <= status < 300 for label, status in statuses if "accounts" not in label), (
        sorted(statuses)
    )
