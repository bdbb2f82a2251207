"""Schemathesis checks for `nixarr-units serve` (tests/e2e/api_browser.rs
loads this module through SCHEMATHESIS_HOOKS, with docs/api.yaml).

- `server_error_is_documented` replaces schemathesis' `not_a_server_error`:
  a 5xx is a failure unless it is one docs/api.yaml documents and the test's
  stack can cause: the D-Bus failure (500, `{"error": "systemd: ..."}`), or
  a job that outlived the short `?timeout=` the request itself asked for
  (500, `jobResult: "timeout"`). The stack's services start and stop
  cleanly, so no other job result may come back.
- `every_route_reached`: each operation tested answered at least once as
  it does for a real service (2xx, or 409 for a start/stop that is
  already done), so the run did not only see 401s and 404s.
"""

import schemathesis

# A `?timeout=` under this many seconds may end before a start or a restart
# does (the fake app takes a few seconds under load).
SHORT_TIMEOUT = 30


def _json(response):
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _short_timeout(case):
    value = (case.query or {}).get("timeout")
    try:
        return value is not None and int(value) < SHORT_TIMEOUT
    except (TypeError, ValueError):
        return False


def _timed_out(body, case):
    if not _short_timeout(case):
        return False
    if body.get("jobResult") == "timeout":
        return True
    rows = body.get("containers")
    return (
        isinstance(rows, list)
        and any(r.get("jobResult") == "timeout" for r in rows)
        and all(r.get("jobResult") in ("done", "timeout") for r in rows)
    )


@schemathesis.check
def server_error_is_documented(ctx, response, case):
    if response.status_code < 500:
        return None
    body = _json(response)
    if response.status_code == 500 and body is not None:
        error = body.get("error")
        if isinstance(error, str) and error.startswith("systemd: "):
            return None
        if case.method == "POST" and _timed_out(body, case):
            return None
    raise AssertionError(
        f"{case.method} {case.formatted_path}: HTTP {response.status_code} is not a documented "
        f"server error (the D-Bus failure, or a job past a short ?timeout=): {response.text[:500]}"
    )


@schemathesis.check
class every_route_reached:
    def __init__(self):
        self.tested = set()
        self.reached = set()

    def after_response(self, ctx, response, case):
        label = case.operation.label
        self.tested.add(label)
        status = response.status_code
        if 200 <= status < 300 or (status == 409 and case.method == "POST"):
            self.reached.add(label)

    def after_run(self, ctx):
        missed = sorted(self.tested - self.reached)
        if missed:
            raise AssertionError("never answered as for a real service (2xx, or 409 on POST): " + ", ".join(missed))
