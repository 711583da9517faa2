"""The servers file, in the format desktop MCP clients use::

    {"mcpServers": {
        "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"]},
        "team": {"url": "https://tools.example.com/mcp", "headers": {"Authorization": "Bearer ${TEAM_TOKEN}"}}
    }}

A server is started over stdio (``command``, ``args``, ``env``, ``cwd``) or reached over streamable
HTTP (``url``, ``headers``). ``${VAR}`` inside any value is read from the environment, so that
secrets stay out of the file. Other keys some clients write (``type``, ``disabled``...) are ignored.

A server with ``"expose": true`` has each of its tools served by flowdeck as ``<prefix>__<tool>``
(``prefix`` defaults to the server's name), recorded like any flow: see :mod:`flowdeck.exposure`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowdeck.errors import InvalidServers, Problem

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


PREFIX_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _Server(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    expose: bool = False
    prefix: str | None = Field(default=None, pattern=PREFIX_PATTERN)


class StdioServer(_Server):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class HttpServer(_Server):
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)


ServerSpec = StdioServer | HttpServer


def load_servers(path: Path, environ: Mapping[str, str] = os.environ) -> dict[str, ServerSpec]:
    """The servers of the file at ``path`` by name, or :class:`~flowdeck.errors.InvalidServers` with
    every problem and its place."""
    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidServers(source, [Problem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidServers(source, [Problem("", f"not UTF-8 text: {exc}")]) from None
    except json.JSONDecodeError as exc:
        place = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidServers(source, [Problem(place, f"not JSON: {exc.msg}")]) from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise InvalidServers(source, [Problem("mcpServers", 'must be an object of servers: {"NAME": {...}}')])
    found: dict[str, ServerSpec] = {}
    problems: list[Problem] = []
    for name, entry in servers.items():
        place = f"mcpServers.{name}"
        spec, entry_problems = _server(entry, place, environ)
        problems.extend(entry_problems)
        if spec is not None:
            found[name] = spec
    problems.extend(_prefix_problems(found))
    if problems:
        raise InvalidServers(source, problems)
    return found


def exposed_prefixes(servers: Mapping[str, ServerSpec]) -> dict[str, str]:
    """The prefix of each server whose tools are exposed, by server name."""
    return {name: spec.prefix or name for name, spec in servers.items() if spec.expose}


def _prefix_problems(servers: Mapping[str, ServerSpec]) -> list[Problem]:
    """An exposed server's tools are named after its prefix: it must fit a tool name, and be its own."""
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for name, prefix in exposed_prefixes(servers).items():
        if re.fullmatch(PREFIX_PATTERN, prefix) is None:
            message = "the server's name does not fit a tool name (letters, digits, _ and -): give a prefix"
            problems.append(Problem(f"mcpServers.{name}.prefix", message))
        elif prefix in owner:
            message = f"the prefix {prefix!r} is also the prefix of {owner[prefix]!r}: give each its own"
            problems.append(Problem(f"mcpServers.{name}.prefix", message))
        else:
            owner[prefix] = name
    return problems


def _server(entry: Any, place: str, environ: Mapping[str, str]) -> tuple[ServerSpec | None, list[Problem]]:
    if not isinstance(entry, dict):
        return None, [Problem(place, "must be an object with a command (stdio) or a url (streamable HTTP)")]
    entry, problems = _expand(entry, place, environ)
    if "command" in entry and "url" in entry:
        problems.append(Problem(place, "has both a command and a url: give one"))
        return None, problems
    if "command" not in entry and "url" not in entry:
        problems.append(Problem(place, "needs a command (stdio) or a url (streamable HTTP)"))
        return None, problems
    kind: type[_Server] = StdioServer if "command" in entry else HttpServer
    try:
        return kind.model_validate(entry), problems  # type: ignore[return-value]
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if error["type"] == "string_pattern_mismatch":
                message = (
                    "must be an http:// or https:// URL"
                    if where == "url"
                    else "must fit a tool name: 1 to 64 letters, digits, _ or -"
                )
            problems.append(Problem(f"{place}.{where}", message))
        return None, problems


def _expand(value: Any, place: str, environ: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """``value`` with every ``${VAR}`` replaced by its value in the environment."""
    problems: list[Problem] = []

    def walk(item: Any, where: str) -> Any:
        if isinstance(item, str):
            for name in _missing(item, environ):
                problems.append(Problem(where, f"the environment variable {name} is not set"))
            return _VARIABLE.sub(lambda match: environ.get(match.group(1), ""), item)
        if isinstance(item, dict):
            return {key: walk(sub, f"{where}.{key}") for key, sub in item.items()}
        if isinstance(item, list):
            return [walk(sub, f"{where}[{index}]") for index, sub in enumerate(item)]
        return item

    return walk(value, place), problems


def _missing(text: str, environ: Mapping[str, str]) -> Iterator[str]:
    for match in _VARIABLE.finditer(text):
        if match.group(1) not in environ:
            yield match.group(1)
