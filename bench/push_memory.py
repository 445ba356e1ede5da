"""What native push adds to a notify delivery worker's memory: the process's
resident set (``VmRSS``) with the delivery worker's own imports, then after
100 pushes to a local FCM stand-in (tests/fcm.py: the OAuth2 token endpoint
and the HTTP v1 send, checking each request), google-auth imported on the
first push and its access token made once.

Usage: python -m bench.push_memory [--pushes N]   (prints JSON; run it three times)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=100)
    n = parser.parse_args().pushes

    import services.notify.app  # noqa: F401  the delivery worker's imports
    from services.notify import fcm
    from tests.fcm import FcmStandIn, push_token

    standin = FcmStandIn(Path(tempfile.mkdtemp()))
    env = standin.env()
    before = _rss_mib()
    client = fcm.client(
        env["FCM_PROJECT_ID"], env["FCM_CREDENTIALS_FILE"], env["FCM_BASE_URL"], None
    )
    for _ in range(n):
        client.send(
            push_token(), "apns", "Something to celebrate", "You kept 10 rituals together.", 10
        )
    after = _rss_mib()
    standin.close()
    assert len(standin.messages) == n and standin.token_requests == 1 and not standin.problems
    print(
        json.dumps(
            {
                "pushes": n,
                "rss_before_mib": round(before, 1),
                "rss_after_mib": round(after, 1),
                "added_mib": round(after - before, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
