#!/usr/bin/env python3
"""The image's HEALTHCHECK: exit 0 when the gateway answers GET /healthz with 200, else 1.

`ocpp-gateway-healthcheck URL...` tries the URLs in order and the first 200 wins; the Dockerfile
names the status listener (`status.bind`, port 9100) first, then the charge point listener
(`server.ws_bind`, port 9000), which serves /healthz as well. HEALTHCHECK_URLS (space-separated)
replaces them without a rebuild (`docker run -e HEALTHCHECK_URLS=...`). /healthz says the process
is alive, also while it drains; readiness (/readyz) is for load balancers and Kubernetes.
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.request

TIMEOUT_SECONDS = 2.0
# Never through a proxy from the environment (HTTP_PROXY): the gateway is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """True when `url` answers 200 within `timeout`."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):  # refused, timeout, not 200, not HTTP
        return False


def main(argv: list[str]) -> int:
    urls = os.environ.get("HEALTHCHECK_URLS", "").split() or argv[1:]
    if not urls:
        print("usage: ocpp-gateway-healthcheck URL... (or HEALTHCHECK_URLS)", file=sys.stderr)
        return 1  # Docker reserves exit status 2
    for url in urls:
        if healthy(url):
            return 0
    print(f"unhealthy: no 200 from {', '.join(urls)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
