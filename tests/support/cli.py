"""The ``flowdeck`` command run in-process by Typer's test runner: the same commands, arguments,
output streams and exit codes as a user's shell gets, without starting an interpreter."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from flowdeck.cli import app


def flowdeck(*args: str, database_url: str, ok: bool = True, **env: str) -> Result:
    """Run ``flowdeck ARGS`` on ``database_url``; with ``ok``, fail the test unless it exits 0."""
    result = CliRunner().invoke(app, list(args), env={"FLOWDECK_DATABASE_URL": database_url, **env})
    if ok:
        assert result.exit_code == 0, result.stderr or result.output
    return result
