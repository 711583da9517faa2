"""The flow loader against anything: random text and random JSON-like data give a InvalidFlow listing
problems, or a flow; never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdeck.errors import InvalidFlow
from flowdeck.flowfiles import load_flow_text, parse_flow

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
node = st.fixed_dictionaries(
    {"id": st.text(max_size=8), "type": st.sampled_from(["transform", "delay", "fail", "http", "nope", ""])},
    optional={"config": json_values, "when": json_values},
)
flows = st.fixed_dictionaries(
    {"name": st.text(max_size=12), "nodes": st.lists(node, max_size=4) | json_values},
    optional={
        "input_schema": json_values,
        "output": json_values,
        "timeout_s": json_values,
        "title": json_values,
    },
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _loads_or_explains(call) -> None:  # type: ignore[no-untyped-def]
    problems = []
    try:
        call()
    except InvalidFlow as exc:
        problems = exc.problems
        assert problems, "a InvalidFlow names at least one problem"
    assert all(isinstance(problem.message, str) and problem.message for problem in problems)


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    _loads_or_explains(lambda: load_flow_text(text))


@FUZZ
@given(flows)
def test_any_flow_shaped_data(data: dict) -> None:
    _loads_or_explains(lambda: parse_flow(data))
    _loads_or_explains(lambda: load_flow_text(json.dumps(data), json_syntax=True))


@FUZZ
@given(st.text(alphabet="{}%#[]()|.'\" abcx=+-*/~", max_size=40))
def test_any_template(source: str) -> None:
    data = {
        "name": "t",
        "nodes": [{"id": "a", "type": "transform", "config": {"value": source}}],
        "output": source,
    }
    _loads_or_explains(lambda: parse_flow(data))
