"""The ``flowdeck`` command. Every failure is one clear message on stderr and exit code 1, never a
traceback: a :class:`~flowdeck.errors.FlowdeckError` says what went wrong, anything else is one
"internal error" line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from flowdeck import __version__
from flowdeck.engine import PreparedFlow, Run
from flowdeck.errors import FlowdeckError, FlowNotFound, InvalidFlow, InvalidQuery
from flowdeck.flowfiles import check_references, load_flow_files
from flowdeck.records import Step, dump_json
from flowdeck.settings import Settings
from flowdeck.states import Status, StepStatus, Transport
from flowdeck.store import database
from flowdeck.store.export import Format, export_executions
from flowdeck.store.flows import FlowRecord, delete_flow, list_flows, resolve_flow
from flowdeck.store.prune import count_prunable, prune_executions
from flowdeck.store.reads import PARAM_PREFIX, Filter, get_execution, list_executions
from flowdeck.store.seed import seed_executions
from flowdeck.times import iso, parse_iso
from flowdeck.tracking import CallInfo, Tracker


class _Commands(TyperGroup):
    """Turns whatever a command raises into one ``error: ...`` line on stderr and exit code 1, here
    rather than around the whole program, so that Typer's test runner, which calls the commands
    in-process, sees exactly what a user does."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise  # Typer's own: an exit code, or a usage error it shows itself
        except BaseException as exc:
            typer.echo(f"error: {_describe(exc)}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    help="Serve flows as MCP tools and inspect every execution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
flows_app = typer.Typer(help="Import, list, run and delete flows.", no_args_is_help=True)
executions_app = typer.Typer(help="List and show recorded executions.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")
app.add_typer(executions_app, name="executions")
app.add_typer(db_app, name="db")

_state: dict[str, Settings] = {}


class CliError(FlowdeckError):
    """A command given something it can't use."""


@app.callback()
def _root(
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database URL (default: $FLOWDECK_DATABASE_URL or sqlite)"),
    ] = None,
) -> None:
    settings = Settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    _state["settings"] = settings


def _settings() -> Settings:
    return _state.get("settings") or Settings()


def _db() -> Engine:
    """The database, migrated to the current schema (a no-op when it is)."""
    return _db_of(_settings())


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# ---- flows ----------------------------------------------------------------------------------------


ServersOption = Annotated[
    Path | None,
    typer.Option(
        "--servers", help="The MCP servers mcp nodes call (mcpServers JSON; default: $FLOWDECK_MCP_SERVERS)"
    ),
]


def _with(settings: Settings, *, database_url: str | None = None, servers: Path | None = None) -> Settings:
    """``settings`` with what a command's own options say."""
    update: dict[str, Any] = {}
    if database_url:
        update["database_url"] = database_url
    if servers is not None:
        update["mcp_servers"] = servers
    return settings.model_copy(update=update) if update else settings


def _exposing(settings: Settings) -> dict[str, str]:
    """The servers whose tools the servers file exposes, with their prefixes."""
    if settings.mcp_servers is None:
        return {}
    from flowdeck.remote import exposed_prefixes, load_servers

    return exposed_prefixes(load_servers(settings.mcp_servers))


def _flow_to_run(name: str, settings: Settings) -> FlowRecord:
    """The flow of that name or id; a tool of an exposed server that no server has served yet is
    listed from that server first."""
    db = _db_of(settings)
    try:
        return resolve_flow(db, name)
    except FlowNotFound:
        servers = [server for server, prefix in _exposing(settings).items() if name.startswith(f"{prefix}__")]
        if not servers:
            raise
    asyncio.run(_list_exposed(settings, servers))
    return resolve_flow(db, name)


async def _list_exposed(settings: Settings, servers: list[str]) -> None:
    from flowdeck.runtime import Runtime

    runtime = Runtime.create(settings, kind="cli")
    async with runtime.running(serving=False):
        if runtime.exposures is not None:
            await runtime.exposures.list_now(servers)


def _server_names(settings: Settings) -> list[str] | None:
    """The servers of the servers file (its problems raised), or None when none is given."""
    if settings.mcp_servers is None:
        return None
    from flowdeck.remote import load_servers

    return sorted(load_servers(settings.mcp_servers))


@flows_app.command("import")
def flows_import(
    paths: Annotated[list[Path], typer.Argument(help="Flow files, or folders of them")],
    servers: ServersOption = None,
) -> None:
    """Create or update flows from YAML/JSON files. Nothing is imported if any file has a problem."""
    from flowdeck.runtime import import_flow_files

    names = _server_names(_with(_settings(), servers=servers))
    db = _db()
    try:
        imported = import_flow_files(db, paths, names)
    except InvalidFlow as exc:
        raise CliError(f"nothing imported:\n{exc}") from None
    if not imported:
        raise CliError("no flow files found (*.yaml, *.yml, *.json)")
    for record, outcome in imported:
        typer.echo(f"{outcome:9} {record.name} (revision {record.revision})")


@flows_app.command("list")
def flows_list() -> None:
    """Live flows; deleted flows that have executions follow, marked deleted. A flow serving an
    exposed server's tool says which server."""
    db = _db()
    records = list_flows(db, include_deleted=True)
    if not records:
        typer.echo("no flows: import some with `flowdeck flows import PATH`")
        return
    names = [record.name + (" (deleted)" if record.deleted else "") for record in records]
    width = max(24, *map(len, names))
    typer.echo(f"{'NAME':{width}} {'REV':>4} {'EXECUTIONS':>10}  DESCRIPTION")
    for name, record in zip(names, records, strict=True):
        count = list_executions(db, Filter(flow_id=record.id), per_page=1).total  # from the kept counters
        about = record.description.strip()[:60]
        if record.exposed_server is not None:
            about = f"[exposed from {record.exposed_server}] {about}"
        typer.echo(f"{name:{width}} {record.revision:>4} {count:>10}  {about}")


@flows_app.command("delete")
def flows_delete(name: Annotated[str, typer.Argument(help="Flow name or id")]) -> None:
    """Delete a flow. Its executions stay, under its name."""
    db = _db()
    record = resolve_flow(db, name)
    if record.deleted:
        raise CliError(f"flow {name!r} is already deleted")
    from flowdeck.exposure import check_deletable

    check_deletable(record, set(_exposing(_settings())))
    delete_flow(db, record.id)
    typer.echo(f"deleted {record.name} (its executions are kept)")


@flows_app.command("run")
def flows_run(
    name: Annotated[str, typer.Argument(help="Flow name")],
    args: Annotated[str, typer.Option("--args", help="Tool arguments as a JSON object")] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    servers: ServersOption = None,
) -> None:
    """Run a flow in this process, recorded like any call (transport: cli)."""
    try:
        params = json.loads(args)
    except ValueError as exc:
        raise CliError(f"--args is not JSON: {exc}") from None
    settings = _with(_settings(), servers=servers)
    record = _flow_to_run(name, settings)
    if record.deleted:
        raise CliError(f"flow {name!r} is deleted")
    run = asyncio.run(
        _run_tracked(settings, lambda tracker: (tracker.prepare(record), params, CallInfo(Transport.CLI)))
    )
    _print_run(record.name, run, as_json)


def _print_run(name: str, run: Run, as_json: bool) -> None:
    """A run's output (or why it failed) and its execution, as ``flows run`` prints them; exit 1
    when it failed."""
    error = run.error
    took = _ms(run.ended_at - run.started_at if run.ended_at is not None else None)
    if as_json:
        result = {
            "execution_id": run.execution_id,
            "status": run.status,
            "output": run.output,
            "error": error,
        }
        typer.echo(dump_json(result, indent=2))
    elif error is None:
        typer.echo(_json(run.output))
        typer.echo(f"execution {run.execution_id} fulfilled in {took}")
    else:
        where = f" at node '{error.node_id}'" if error.node_id else ""
        typer.echo(f"{name} failed{where}: {error.message} ({error.type})", err=True)
        typer.echo(f"execution {run.execution_id} error in {took}")
    if error is not None:
        raise typer.Exit(1)


Plan = Callable[[Tracker], tuple[PreparedFlow, Any, CallInfo]]  # what to run, with what, called how


async def _run_tracked(settings: Settings, plan: Plan) -> Run:
    """Run what ``plan`` gives, in a runtime of this process, so that its flow and mcp nodes can run
    (servers watching this database see the run: on PostgreSQL through it, on SQLite by their looks)."""
    from flowdeck.runtime import Runtime

    runtime = Runtime.create(settings, kind="cli")
    async with runtime.running(serving=False):
        flow, params, call = plan(runtime.tracker)
        return await runtime.tracker.run(flow, params, call)


def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f} ms"


# ---- executions -----------------------------------------------------------------------------------


FlowOption = Annotated[str | None, typer.Option("--flow", help="Flow name or id")]
StatusOption = Annotated[str | None, typer.Option("--status", help=", ".join(Status) + ", or none for all")]
SinceOption = Annotated[str | None, typer.Option("--since", help="Started at or after (ISO 8601)")]
UntilOption = Annotated[str | None, typer.Option("--until", help="Started at or before (ISO 8601)")]
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", help="KEY=VALUE: a top-level argument's value (repeatable)")
]


@executions_app.command("list")
def executions_list(
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    param: ParamOption = None,
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    per_page: Annotated[int, typer.Option("--per-page", min=1, max=100)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON")] = False,
) -> None:
    """Executions, newest first."""
    db = _db()
    where = _filter(db, flow, status, since, until, param)
    result = list_executions(db, where, page=page, per_page=per_page)
    if as_json:
        typer.echo(dump_json(result, indent=2))
        return
    if not result.items:
        typer.echo(
            "no executions" if result.total == 0 else f"page {page} is past the last page ({result.pages})"
        )
        return
    typer.echo(f"{'ID':36}  {'STATUS':26} {'STARTED':24} {'DURATION':>11}  {'FLOW':20} PARAMS")
    for item in result.items:
        duration = "-" if item.duration_ms is None else f"{item.duration_ms:.1f} ms"
        status_text = item.status if item.error_type is None else f"{item.status}:{item.error_type}"
        typer.echo(
            f"{item.id:36}  {status_text:26} {iso(item.started_at):24} {duration:>11}  "
            f"{item.flow_name:20} {item.params_preview}"
        )
    typer.echo(f"page {result.page} of {result.pages} ({result.total} executions)")


def _filter(
    db: Engine,
    flow: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    param: list[str] | None,
) -> Filter:
    """The list filters as options say them (``--param KEY=VALUE``, repeatable)."""
    query = {"status": status or "", "since": since or "", "until": until or ""}
    for pair in param or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--param is KEY=VALUE, not {pair!r}")
        query[f"{PARAM_PREFIX}{key}"] = value
    try:
        where = Filter.from_query(query)
    except InvalidQuery as exc:
        raise CliError(f"--{exc}") from None
    return replace(where, flow_id=resolve_flow(db, flow).id) if flow else where


@executions_app.command("export")
def executions_export(
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    param: ParamOption = None,
    form: Annotated[Format, typer.Option("--format", help="ndjson: whole executions; csv: summaries")] = (
        Format.NDJSON
    ),
) -> None:
    """Every execution the filters match, newest first, to stdout: NDJSON (one whole execution per
    line) or CSV (one summary per row, with a header)."""
    db = _db()
    where = _filter(db, flow, status, since, until, param)
    for piece in export_executions(db, where, form):
        sys.stdout.write(piece)
    sys.stdout.flush()


@executions_app.command("prune")
def executions_prune(
    before: Annotated[
        str | None, typer.Option("--before", help="Delete ended executions started before it (ISO 8601)")
    ] = None,
    flow: FlowOption = None,
    status: StatusOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many would go")] = False,
) -> None:
    """Delete old ended executions (never pending ones), in small batches that running calls hardly
    notice; the counts and the daily chart stay exact. Nothing is ever deleted unless asked."""
    if not before:
        raise CliError("prune needs --before TIME: it deletes only executions started before a time you give")
    try:
        cutoff = parse_iso(before)
    except ValueError:
        raise CliError(f"--before must be a time in ISO 8601 (2026-11-30T14:02Z), not {before!r}") from None
    db = _db()
    where = _filter(db, flow, status, None, None, None)
    if dry_run:
        typer.echo(f"would delete {count_prunable(db, where, cutoff)} executions")
        return
    typer.echo(f"deleted {prune_executions(db, where, cutoff)} executions")


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="Execution id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the execution as JSON")] = False,
) -> None:
    """One execution: its parameters, each step with its output, and the data it ended with."""
    record = get_execution(_db(), execution_id)
    if as_json:
        typer.echo(dump_json(record, indent=2))
        return
    duration = "-" if record.duration_ms is None else f"{record.duration_ms:.1f} ms"
    client = " ".join(filter(None, (record.client.name, record.client.version))) if record.client else ""
    typer.echo(f"execution {record.id}: {record.status}")
    typer.echo(f"  flow       {record.flow_name} (revision {record.flow_revision}, id {record.flow_id})")
    typer.echo(f"  started    {iso(record.started_at)}   ended {iso(record.ended_at) or '-'}   {duration}")
    typer.echo(f"  transport  {record.transport}   client {client or '-'}")
    if record.parent:
        typer.echo(f"  parent     {record.parent.execution_id} (its node '{record.parent.node_id}')")
    if record.children:
        typer.echo(
            f"  children   {len(record.children)}: {_counted(child.status for child in record.children)}"
        )
    typer.echo(
        f"  params     {_compact(record.initial_params)}{'  (cut)' if record.params_truncated else ''}"
    )
    if record.error:
        where = f" at node '{record.error.node_id}'" if record.error.node_id else ""
        typer.echo(f"  error      {record.error.type}{where}: {record.error.message}")
    typer.echo(f"steps ({record.steps_done} of {record.steps_total} done):")
    for step in record.steps:
        step_ms = "" if step.duration_ms is None else f" {step.duration_ms:.1f} ms"
        typer.echo(f"  [{step.index}] {step.node_id} ({step.node_type}) {step.status}{step_ms}")
        if step.status == StepStatus.FULFILLED or step.output is not None:
            typer.echo(f"      output {_compact(step.output)}{'  (cut)' if step.output_truncated else ''}")
        if step.error:
            typer.echo(f"      error  {step.error}")
        for line in _step_links(step):
            typer.echo(f"      {line}")
    typer.echo(f"data  {_compact(record.data)}")
    if record.status == Status.FULFILLED:
        typer.echo(f"output {_compact(record.output)}")


@executions_app.command("rerun")
def executions_rerun(
    execution_id: Annotated[str, typer.Argument(help="Execution id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    servers: ServersOption = None,
) -> None:
    """Run an execution again in this process: its flow as it is now, the same arguments (recorded
    with transport: rerun and rerun_of); printed like `flows run`."""
    settings = _with(_settings(), servers=servers)
    run = asyncio.run(_run_tracked(settings, lambda tracker: tracker.plan_rerun(execution_id)))
    _print_run(run.flow.name, run, as_json)


@executions_app.command("seed")
def executions_seed(
    flow: Annotated[str, typer.Option("--flow", help="Flow name or id")],
    count: Annotated[int, typer.Option("--count", min=1, help="How many executions")] = 1000,
    database_url: Annotated[str | None, typer.Option("--database-url", help="Database URL")] = None,
) -> None:
    """Insert COUNT realistic executions of a flow (a step per node, spread over 14 days): to try the
    history at scale."""
    db = _db_of(_with(_settings(), database_url=database_url))
    record = resolve_flow(db, flow)
    started = time.perf_counter()
    seed_executions(db, record, count)
    typer.echo(f"seeded {count} executions of {record.name} in {time.perf_counter() - started:.1f} s")


def _step_links(step: Step) -> list[str]:
    """What a step reached: its tries, items, child execution, remote call."""
    lines = []
    if step.attempts:
        lines.append(f"tries  {len(step.attempts)}: {', '.join(attempt.status for attempt in step.attempts)}")
    if step.items is not None:
        failed = next((item for item in step.items if item.status == StepStatus.ERROR), None)
        first = f" (item {failed.index}: {failed.error})" if failed else ""
        lines.append(f"items  {len(step.items)}: {_counted(item.status for item in step.items)}{first}")
    if step.child_execution_id:
        lines.append(f"child  {step.child_execution_id}")
    if step.remote:
        remote = step.remote
        said = f" -> execution {remote.execution_id}" if remote.execution_id else ""
        lines.append(f"remote {remote.server}/{remote.tool}{said}")
    return lines


def _counted(statuses: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# ---- serving --------------------------------------------------------------------------------------

FlowsOption = Annotated[
    list[Path] | None, typer.Option("--flows", help="Flow files or folders to import at start")
]
# more paths after one --flows: `--flows a.yaml b.yaml folder/`
MoreFlows = Annotated[list[Path] | None, typer.Argument(help="More flow files or folders, after --flows")]
DatabaseOption = Annotated[str | None, typer.Option("--database-url", help="Database URL")]


def _check_flows(settings: Settings, flows: list[Path]) -> None:
    """Refuse, before serving, flow files with problems (what they name included) and a servers file
    with problems."""
    names = _server_names(settings)
    try:
        loaded = load_flow_files(flows)
        if loaded:
            live = [flow.name for flow in list_flows(_db_of(settings))]
            check_references(loaded, live_flows=live, servers=names)
    except InvalidFlow as exc:
        raise CliError(f"the flows to import have problems, nothing was served:\n{exc}") from None


def _db_of(settings: Settings) -> Engine:
    db = database.open_database(settings.database_url)
    database.upgrade(db)
    return db


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    database_url: DatabaseOption = None,
    flows: FlowsOption = None,
    servers: ServersOption = None,
    more: MoreFlows = None,
    mcp_stateless: Annotated[
        bool, typer.Option("--mcp-stateless", help="No MCP sessions: any server can answer any request")
    ] = False,
) -> None:
    """Serve MCP at /mcp (and a health route at /health)."""
    import uvicorn

    from flowdeck.app import create_app, is_loopback

    settings = _with(_settings(), database_url=database_url, servers=servers)
    flows = [*(flows or []), *(more or [])]
    if not is_loopback(host) and not settings.auth_token:
        raise CliError(
            f"refusing to serve on {host} without FLOWDECK_AUTH_TOKEN: anyone who can reach it could run "
            "your flows. Set FLOWDECK_AUTH_TOKEN, or serve on 127.0.0.1."
        )
    _check_flows(settings, flows)
    application = create_app(settings, flow_paths=flows, host=host, stateless=mcp_stateless)
    typer.echo(f"flowdeck {__version__}: MCP at http://{host}:{port}/mcp", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command("mcp")
def mcp_stdio(
    database_url: DatabaseOption = None,
    flows: FlowsOption = None,
    servers: ServersOption = None,
    more: MoreFlows = None,
) -> None:
    """Serve MCP over stdio (for desktop clients); nothing but protocol goes to stdout."""
    settings = _with(_settings(), database_url=database_url, servers=servers)
    flows = [*(flows or []), *(more or [])]
    _check_flows(settings, flows)
    from flowdeck.stdio import serve_stdio

    asyncio.run(serve_stdio(settings, flows))


@app.command()
def call(
    name: Annotated[str, typer.Argument(help="Flow (tool) name")],
    pairs: Annotated[
        list[str] | None, typer.Argument(help="Arguments as key=value (JSON values parsed)")
    ] = None,
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
    url: Annotated[
        str, typer.Option("--url", help="The server's MCP endpoint")
    ] = "http://127.0.0.1:8000/mcp",
    token: Annotated[
        str | None, typer.Option("--token", help="Bearer token (default: $FLOWDECK_AUTH_TOKEN)")
    ] = None,
) -> None:
    """Call a flow through a flowdeck server, as an MCP client does; shows nodes as they finish."""
    from mcp import types

    from flowdeck.mcp.client import call_flow

    try:
        base = json.loads(args)
    except ValueError as exc:
        raise CliError(f"--args is not JSON: {exc}") from None
    if not isinstance(base, dict):
        raise CliError("--args must be a JSON object")

    async def progress(done: float, total: float | None, message: str | None) -> None:
        of = f"/{total:g}" if total else ""
        typer.echo(f"[{done:g}{of}] {message or ''}", err=True)

    result = asyncio.run(
        call_flow(url, name, pairs or [], base, token=token or _settings().auth_token, on_progress=progress)
    )
    execution_id = (result.meta or {}).get("flowdeck/execution_id", "-")
    text = "".join(part.text for part in result.content if isinstance(part, types.TextContent))
    if result.is_error:
        typer.echo(text, err=True)
        typer.echo(f"execution {execution_id} error")
        raise typer.Exit(1)
    try:
        typer.echo(_json(json.loads(text)))
    except ValueError:
        typer.echo(text)
    typer.echo(f"execution {execution_id} fulfilled")


# ---- db -------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the current schema."""
    db = database.open_database(_settings().database_url)
    database.upgrade(db)
    where = db.url.render_as_string(hide_password=True)
    typer.echo(f"database at {where} is at revision {database.head_revision()}")


# ---- entry point ----------------------------------------------------------------------------------


def main() -> None:
    """Run the CLI."""
    app()


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # task groups wrap what went wrong
    if isinstance(exc, FlowdeckError):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        original = getattr(exc, "orig", None) or exc
        return f"database error: {' '.join(str(original).split())}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"internal error: {type(exc).__name__}: {exc}"
