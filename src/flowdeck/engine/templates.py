"""Sandboxed Jinja2 templates over an execution's context.

A string that is exactly one ``{{ expr }}`` evaluates to the expression's own value (a number stays a
number, an object stays an object); any other string containing template syntax renders as text.
Templates are compiled once per flow, when the flow is prepared, never per execution. They run in
the sandbox of :mod:`flowdeck.engine.sandbox`, within its time and size limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined

from flowdeck.engine.sandbox import Sandbox, TemplateTimeout, watchdog

_ENV = Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_SYNTAX = ("{{", "{%", "{#")


class TemplateRenderError(Exception):
    """A template failed while rendering: a missing key, an unsafe access, a bad operation."""


def is_template(value: str) -> bool:
    """True when the string holds template syntax and so must be compiled."""
    return any(mark in value for mark in _SYNTAX)


class Template:
    """One compiled template string. Raises ``jinja2.TemplateSyntaxError`` at construction when bad."""

    __slots__ = ("_globals", "_is_expression", "_template", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        match = _WHOLE_EXPRESSION.match(source)
        self._is_expression = bool(match and not any(mark in match.group("expr") for mark in _SYNTAX))
        if self._is_expression:
            # the template Jinja2 compiles an expression into (``{% set result = expr %}``): run
            # below as Jinja2's own TemplateExpression runs it
            compiled = _ENV.compile_expression(match.group("expr"), undefined_to_none=False)
            self._template = compiled._template
        else:
            self._template = _ENV.from_string(source)
        # Jinja2 merges the globals (a ChainMap) into each render's context; merged once here, a
        # render of a small template takes half the time
        self._globals = dict(self._template.globals)

    def render(self, context: Mapping[str, Any]) -> Any:
        """The expression's native value, or the rendered text."""
        try:
            timing = watchdog.enter()
            try:
                return self._render(context)
            finally:
                watchdog.leave(timing)
        except TemplateTimeout:
            raise TemplateRenderError(
                f"template {self.source!r}: ran longer than {watchdog.limit_s:g} s, so it was stopped"
            ) from None

    def _render(self, context: Mapping[str, Any]) -> Any:
        try:
            variables = self._template.new_context({**self._globals, **context}, shared=True)
            if not self._is_expression:
                return _ENV.concat(self._template.root_render_func(variables))
            for _ in self._template.root_render_func(variables):
                pass
            value = variables.vars["result"]
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return to_json_value(value)
        except TemplateRenderError:
            raise
        except TemplateError as exc:
            raise TemplateRenderError(f"template {self.source!r}: {exc.message or exc}") from None
        except Exception as exc:  # a template is user code: any failure of it is the template's error
            raise TemplateRenderError(f"template {self.source!r}: {type(exc).__name__}: {exc}") from None


def to_json_value(value: Any) -> Any:
    """Turn a template result into plain JSON data; anything else (a function, a class) is refused."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | range):
        return [to_json_value(item) for item in value]
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise TemplateRenderError(f"a template produced a {type(value).__name__}, which is not JSON data")


def compile_value(value: Any) -> Any:
    """Compile every template string inside a JSON value; other values stay as they are."""
    if isinstance(value, str):
        return Template(value) if is_template(value) else value
    if isinstance(value, dict):
        return {key: compile_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_value(item) for item in value]
    return value


def render_value(compiled: Any, context: Mapping[str, Any]) -> Any:
    """Render a value made by :func:`compile_value`."""
    if isinstance(compiled, Template):
        return compiled.render(context)
    if isinstance(compiled, dict):
        return {key: render_value(item, context) for key, item in compiled.items()}
    if isinstance(compiled, list):
        return [render_value(item, context) for item in compiled]
    return compiled


def has_templates(compiled: Any) -> bool:
    """True when rendering would change the value: lets the runner skip rendering static configs."""
    if isinstance(compiled, Template):
        return True
    if isinstance(compiled, dict):
        return any(has_templates(item) for item in compiled.values())
    if isinstance(compiled, list):
        return any(has_templates(item) for item in compiled)
    return False
