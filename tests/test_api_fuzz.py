"""Schemathesis against /openapi.json: no generated request makes the server fail (5xx)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from flowdeck.settings import Settings
from tests.support import EXAMPLES
from tests.support.server import served


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    with (
        tempfile.TemporaryDirectory() as folder,
        served(Settings(database_url=f"sqlite:///{folder}/fuzz.db"), [EXAMPLES]) as base,
    ):
        yield base


def _operations(base: str) -> list[schemathesis.schemas.APIOperation]:
    # the event streams never end by themselves: their routes are checked in test_events
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").exclude(path_regex=r"/events$")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_request_makes_the_server_fail(live: str) -> None:
    operations = _operations(live)
    assert {op.label for op in operations} >= {"GET /api/flows", "POST /api/flows", "GET /api/executions"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def call(case: schemathesis.Case) -> None:
                response = case.call(base_url=live, timeout=10)
                label = f"{case.method} {case.formatted_path}"
                assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
                assert "Traceback" not in response.text and 'File "' not in response.text, label

            try:
                call()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation with nothing to get wrong
