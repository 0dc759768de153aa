"""Container health check of the central image (`python healthcheck.py api|ingestor`): exit 0 healthy, 1 not.

Standard library only (it runs in the image's Python without importing the application, every few seconds):
- `api`: GET http://127.0.0.1:$MES_API_PORT/health answers 200 (the API answers 503 when its database does not);
- `ingestor`: GET http://127.0.0.1:$MES_INGESTOR_METRICS_PORT/metrics shows `mes_ingestor_healthy 1.0` (every
  storing task runs; cloud_api/ingestor/metrics.py). The ingestor serves no metrics with port 0: unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # loopback http only
            return response.status, response.read(1 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def check(kind: str, environ: dict[str, str]) -> str | None:
    """None when healthy, else the reason (one line)."""
    if kind == "api":
        port = environ.get("MES_API_PORT", "8000")
        status, _ = _get(f"http://127.0.0.1:{port}/health")
        return None if status == 200 else f"/health answered {status}"
    if kind == "ingestor":
        port = environ.get("MES_INGESTOR_METRICS_PORT", "0")
        if port in ("", "0"):
            return "MES_INGESTOR_METRICS_PORT is not set: the ingestor serves no metrics to check"
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        if status != 200:
            return f"/metrics answered {status}"
        healthy = any(
            line.split()[-1] == "1.0" for line in body.splitlines() if line.startswith("mes_ingestor_healthy ")
        )
        return None if healthy else "mes_ingestor_healthy is not 1"
    return f"unknown service {kind!r} (api or ingestor)"


def main(argv: list[str]) -> int:
    kind = argv[1] if len(argv) > 1 else "api"
    try:
        problem = check(kind, dict(os.environ))
    except OSError as error:  # refused, timed out, reset: not (yet) serving
        problem = f"no answer: {error}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
