"""Each service's API documentation page (`/docs`) in a real headless browser, offline.

The page's scripts and style come from the service itself (the pinned flask-swagger-ui package's copy
of swagger-ui-dist), so it works with no network and runs no third party's script beside a bearer
token. Chromium resolves no host name here (``--host-resolver-rules``): a script from anywhere but the
service's own address could not load, and the page would stay blank. Its network log lists every URL
the page asked for; each must be the service's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import free_port

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGE_SECONDS = 20  # virtual time the page gets to load and draw itself


def _browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    if os.environ.get("TANDEM_REQUIRE_SERVERS") == "1":  # CI: .ci/run installs it
        pytest.fail("no headless browser: apt-get install -y chromium")
    pytest.skip("no headless browser (apt-get install -y chromium)")


def _create_app(service: str):
    if service == "journal":
        from services.journal.app import create_app
    elif service == "milestones":
        from services.milestones.app import create_app
    else:
        from services.notify.app import create_app
    return create_app()


def _page_requests(netlog, site: str) -> list[str]:
    """Every URL the page asked for, from the browser's network log (NetLog JSON): the requests made
    for a page of `site` carry it first in their network isolation key (the browser's own, such as
    its update checks, carry none or another)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e.get("params", {}) for e in log["events"] if e["type"] == start]
    return [p["url"] for p in starts if p.get("network_isolation_key", "").split(" ")[0] == site]


@pytest.mark.parametrize("service", ["journal", "milestones", "notify"])
def test_the_docs_page_lists_every_operation_offline_from_the_service_alone(
    service, embedded_backend, tmp_path
):
    browser = _browser()
    app = _create_app(service)
    spec = app.test_client().get("/openapi.json").get_json()
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{port}"
    netlog = tmp_path / "netlog.json"
    try:
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing else resolves: offline
                f"--log-net-log={netlog}",
                f"--virtual-time-budget={PAGE_SECONDS * 1000}",
                "--dump-dom",
                f"{origin}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        thread.join()
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]

    # The page drew every operation of the service's OpenAPI document.
    drawn = []
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                drawn.append(
                    (method, path, f"opblock-{method}" in dom and f'data-path="{path}"' in dom)
                )
    assert drawn and all(ok for *_, ok in drawn), (
        [(m, p) for m, p, ok in drawn if not ok],
        dom[:2000],
    )

    # Everything it loaded came from the service: its scripts and style included.
    urls = _page_requests(netlog, "http://127.0.0.1")
    assert f"{origin}/docs/assets/swagger-ui-bundle.js" in urls, urls
    assert f"{origin}/docs/assets/swagger-ui.css" in urls, urls
    assert f"{origin}/openapi.json" in urls, urls
    elsewhere = sorted({u for u in urls if not u.startswith(origin + "/")})
    assert not elsewhere, elsewhere


def test_only_the_pages_own_files_are_served_from_the_assets_route(embedded_backend):
    client = _create_app("journal").test_client()
    r = client.get("/docs/assets/swagger-ui-bundle.js")
    assert r.status_code == 200 and r.mimetype == "text/javascript", (r.status_code, r.mimetype)
    assert b"SwaggerUIBundle" in r.data
    for name in ("LICENSE", "VERSION", "..%2F__init__.py", "index.css", "oauth2-redirect.html"):
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 404, name
        assert r.mimetype == "application/problem+json", name
