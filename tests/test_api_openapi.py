"""The OpenAPI document is kept true: schemathesis drives the live standalone
server from it, with valid and invalid requests, and every answer must have a
documented status, content type and shape (and no 5xx)."""

from __future__ import annotations

import math
import urllib.request

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from .support.tokens import make_token

# Long-polls are held for real; generated waits are shortened so the run stays quick.
LONGEST_WAIT_IN_TEST = 0.2


def _shorten_wait(case: schemathesis.Case) -> None:
    if not isinstance(case.query, dict) or "wait" not in case.query:
        return
    try:
        wait = float(case.query["wait"])
    except (TypeError, ValueError):
        return  # an invalid value must stay invalid
    if math.isfinite(wait) and LONGEST_WAIT_IN_TEST < wait <= 55:
        case.query["wait"] = LONGEST_WAIT_IN_TEST


@pytest.mark.timeout(600)
def test_live_api_matches_its_openapi_document(standalone) -> None:
    server = standalone("--Realtime.rate_limit=0")
    auth = {"Authorization": f"Bearer {make_token('ada', tenant='acme')}"}
    # A channel that exists, so generated requests also reach the success paths.
    known = "presence-known"
    request = urllib.request.Request(
        f"{server.http_url}/api/channels",
        data=orjson.dumps({"name": known, "type": "presence"}),
        headers={**auth, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201

    schema = schemathesis.openapi.from_url(f"{server.http_url}/api/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # (schemathesis leaves out the operation that serves the document itself)
    assert {op.label for op in operations} >= {
        "GET /channels",
        "POST /channels",
        "GET /channels/{name}",
        "PATCH /channels/{name}",
        "GET /channels/{name}/members",
        "GET /channels/{name}/messages",
        "POST /channels/{name}/messages",
        "POST /channels/{name}/presence",
        "DELETE /channels/{name}/presence",
        "GET /channels/{name}/state",
        "PUT /channels/{name}/state/{key}",
        "DELETE /channels/{name}/state/{key}",
        "GET /profile",
        "PUT /profile",
    }
    for operation in operations:
        has_name = "{name}" in operation.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if has_name and mode is GenerationMode.POSITIVE:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters={"name": known})
                )
            for strategy in strategies:

                @settings(
                    max_examples=40,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    _shorten_wait(case)
                    case.call_and_validate(headers=auth, timeout=30)

                try:
                    run()
                except Exception as exc:  # collect all, to report every mismatch at once
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join([*failures, "server output:", server.output()[-20000:]])
