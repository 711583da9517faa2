"""JSON values as they are stored: serialized once, by the recorder, so that their size can be
capped. A value longer than the cap is replaced by a marker that says what was cut."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic_core import to_json

PREVIEW_CHARS = 80
PARAM_CHARS = 200  # a longer argument is kept for search as its hash


def encode_value(value: Any, max_bytes: int) -> tuple[str, bool]:
    """JSON text of ``value``, and whether it was cut: when longer than ``max_bytes`` (or not storable
    at all), the text is a marker ``{"$truncated": {"bytes", "max_bytes", "preview"}}``. Serialized
    by pydantic-core, a sixth of what ``json.dumps`` takes for the small values of most steps. An
    infinite or NaN number is stored as null, as the API sends it: the stored text is always JSON."""
    try:
        data = to_json(value, fallback=_unknown, inf_nan_mode="null")
    except (RecursionError, ValueError) as exc:  # too deep, circular, a lone surrogate
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        marker = {"$truncated": {"bytes": None, "max_bytes": max_bytes, "preview": f"not storable: {reason}"}}
        return json.dumps(marker), True
    if len(data) <= max_bytes:
        return data.decode(), False
    marker = {"$truncated": {"bytes": len(data), "max_bytes": max_bytes, "preview": data.decode()[:200]}}
    return json.dumps(marker, ensure_ascii=False, separators=(",", ":")), True


def decode_value(text: str | None) -> Any:
    """A stored value back; NULL is None."""
    return None if text is None else json.loads(text)


def _unknown(value: Any) -> str:
    return f"<{type(value).__name__}>"


def _plain(value: Any) -> str | None:
    """A string as it is, an integer (not a bool) as its JSON text, made without json: most
    arguments are one or the other; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def params_preview(params: Any) -> str:
    """The first argument as ``name: value``, shortened for one line of a list."""
    if not isinstance(params, dict) or not params:
        return ""
    name, value = next(iter(params.items()))
    try:
        shown = _plain(value)
        if shown is None:
            shown = json.dumps(value, ensure_ascii=False, default=_unknown)
    except (RecursionError, ValueError):
        shown = "…"
    text = " ".join(f"{name}: {shown}".split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def param_value(value: Any) -> str:
    """An argument as the param filter compares it: a string as it is, anything else as its JSON
    text; one longer than ``PARAM_CHARS`` as ``sha256:<hash>`` of that text (both sides alike)."""
    text = _plain(value)
    if text is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > PARAM_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def param_pairs(arguments: Any) -> list[tuple[str, str]]:
    """The top-level arguments to index for the param filter (keys too long to search are left out)."""
    if not isinstance(arguments, dict):
        return []
    try:
        return [(key, param_value(value)) for key, value in arguments.items() if len(key) <= PARAM_CHARS]
    except (RecursionError, ValueError, TypeError):
        return []
