"""The ``flowdeck`` command: its output and exit codes, run in-process by Typer's test runner; and
once as a real process, for what only a process shows (no traceback, the exit code)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from flowdeck.store import database
from tests.support import EXAMPLES
from tests.support.cli import flowdeck as run
from tests.support.processes import flowdeck_env, run_flowdeck


@pytest.fixture
def flowdeck(database_url: str):  # type: ignore[no-untyped-def]
    return partial(run, database_url=database_url)


def test_import_run_and_show(flowdeck) -> None:
    imported = flowdeck("flows", "import", str(EXAMPLES))
    assert "created   hello (revision 1)" in imported.stdout
    assert "unchanged hello (revision 1)" in flowdeck("flows", "import", str(EXAMPLES / "hello.yaml")).stdout

    run = flowdeck("flows", "run", "hello", "--args", '{"name": "Ada", "language": "fr"}')
    assert json.loads(run.stdout[: run.stdout.rindex("}") + 1]) == {
        "greeting": "Bonjour, Ada!",
        "language": "fr",
    }
    execution_id = run.stdout.strip().splitlines()[-1].split()[1]

    shown = flowdeck("executions", "show", execution_id).stdout
    assert f"execution {execution_id}: fulfilled" in shown
    assert "transport  cli" in shown
    assert "[0] greet (transform) fulfilled" in shown
    assert 'output {"greeting": "Bonjour, Ada!", "language": "fr"}' in shown

    record = json.loads(flowdeck("executions", "show", execution_id, "--json").stdout)
    assert record["status"] == "fulfilled"
    assert record["initial_params"] == {"name": "Ada", "language": "fr"}
    assert record["steps"][0]["output"] == {"greeting": "Bonjour, Ada!", "language": "fr"}
    assert record["started_at"].endswith("Z")

    listed = flowdeck("executions", "list", "--flow", "hello").stdout
    assert execution_id in listed
    assert "name: Ada" in listed


def test_a_failing_run_names_its_node_and_exits_1(flowdeck) -> None:
    flowdeck("flows", "import", str(EXAMPLES))
    result = flowdeck("flows", "run", "charge_card", "--args", '{"amount": 5000}', ok=False)
    assert result.exit_code == 1
    assert (
        "charge_card failed at node 'charge': amount 5000 EUR is over the 1000 limit (node_error)"
        in result.stderr
    )
    as_json = flowdeck("flows", "run", "charge_card", "--args", '{"amount": 5000}', "--json", ok=False)
    payload = json.loads(as_json.stdout)
    assert payload["error"] == {
        "type": "node_error",
        "message": "amount 5000 EUR is over the 1000 limit",
        "node_id": "charge",
    }
    errors = json.loads(flowdeck("executions", "list", "--status", "error", "--json").stdout)
    assert errors["total"] == 2
    assert {item["error_node_id"] for item in errors["items"]} == {"charge"}


def test_invalid_arguments_are_recorded(flowdeck) -> None:
    flowdeck("flows", "import", str(EXAMPLES / "hello.yaml"))
    result = flowdeck("flows", "run", "hello", "--args", '{"language": "de"}', ok=False)
    assert "invalid arguments" in result.stderr and "(invalid_params)" in result.stderr
    page = json.loads(flowdeck("executions", "list", "--json").stdout)
    assert page["items"][0]["error_type"] == "invalid_params"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flows", "run", "nope"], "error: no flow named 'nope'"),
        (["flows", "run", "hello", "--args", "{oops"], "error: --args is not JSON"),
        (["executions", "show", "missing-id"], "error: no execution with id 'missing-id'"),
        (
            ["executions", "list", "--status", "done"],
            "error: --status must be one of pending, fulfilled, error",
        ),
        (["flows", "import", "nowhere.yaml"], "no such file or folder"),
    ],
)
def test_errors_are_one_clear_message_without_traceback(flowdeck, args: list[str], message: str) -> None:
    flowdeck("flows", "import", str(EXAMPLES / "hello.yaml"))
    result = flowdeck(*args, ok=False)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.count("\n") <= 3, result.stderr


def test_a_bad_file_imports_nothing_and_lists_every_problem(flowdeck, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: 'no good'\nnodes:\n  - {id: a, type: warp}\n  - {id: a, type: transform}\n")
    result = flowdeck("flows", "import", str(EXAMPLES / "hello.yaml"), str(bad), ok=False)
    assert "nothing imported" in result.stderr
    assert "bad.yaml: 3 problems:" in result.stderr
    assert "nodes[0].type: unknown node type 'warp'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "no flows" in flowdeck("flows", "list").stdout


def test_delete_keeps_executions_under_the_name(flowdeck) -> None:
    flowdeck("flows", "import", str(EXAMPLES / "hello.yaml"))
    flowdeck("flows", "run", "hello", "--args", '{"name": "x"}')
    assert "deleted hello (its executions are kept)" in flowdeck("flows", "delete", "hello").stdout
    assert "hello (deleted)" in flowdeck("flows", "list").stdout
    listed = flowdeck("executions", "list", "--flow", "hello").stdout
    assert "name: x" in listed
    assert "error: flow 'hello' is deleted" in flowdeck("flows", "run", "hello", ok=False).stderr


def test_a_database_that_refuses_writes_is_a_clear_error_from_a_real_process(tmp_path: Path) -> None:
    """As a user's shell sees it: one line on stderr, exit code 1, no traceback."""
    path = tmp_path / "ro.db"
    run("flows", "import", str(EXAMPLES / "hello.yaml"), database_url=f"sqlite:///{path}")
    read_only = flowdeck_env(f"sqlite:///file:{path}?mode=ro&uri=true")
    result = run_flowdeck("flows", "run", "hello", "--args", '{"name": "x"}', env=read_only)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "readonly" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade(flowdeck) -> None:
    assert f"is at revision {database.head_revision()}" in flowdeck("db", "upgrade").stdout
