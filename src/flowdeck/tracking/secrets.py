"""Arguments a flow's schema marks secret (``writeOnly: true`` or ``format: password``) are stored and
shown as ``"***"``: the flow gets the value, the record never does."""

from __future__ import annotations

from typing import Any

MASK = "***"


def is_secret(schema: Any) -> bool:
    return isinstance(schema, dict) and (
        schema.get("writeOnly") is True or schema.get("format") == "password"
    )


def has_secrets(schema: Any) -> bool:
    """Whether any property, at any depth, is secret (so that most flows skip masking entirely)."""
    if not isinstance(schema, dict):
        return False
    properties = schema.get("properties")
    if isinstance(properties, dict) and any(is_secret(p) or has_secrets(p) for p in properties.values()):
        return True
    return has_secrets(schema.get("items"))


def mask(value: Any, schema: Any) -> Any:
    """A copy of ``value`` with the secret properties replaced by ``"***"``."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {
            key: MASK if is_secret(properties.get(key)) else mask(item, properties.get(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask(item, schema.get("items")) for item in value]
    return value


def holds_secrets(value: Any, schema: Any) -> bool:
    """Whether ``value`` has a property the schema marks secret, at any depth (stored masked, so
    its real value is not known)."""
    if not isinstance(schema, dict):
        return False
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return any(
            is_secret(properties.get(key)) or holds_secrets(item, properties.get(key))
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(holds_secrets(item, schema.get("items")) for item in value)
    return False
