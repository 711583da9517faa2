"""The Jinja2 environment templates run in, and the limits that keep a template from taking the
server with it.

Jinja2's immutable sandbox already keeps templates away from Python's internals and from changing
their inputs. Two things it leaves open matter to a server that renders on its event loop:

- **time**: a loop over loops can run for hours. A render is given ``TIME_LIMIT_S``; a watchdog
  thread interrupts one that runs longer (it raises :class:`TemplateTimeout` in the rendering thread,
  which a template's loops, being Python code, receive at once).
- **memory**: one operation can make a value of gigabytes from small inputs (``'x' * n``,
  ``s.center(n)``, ``sep.join(items)``, ``s ~ s`` in a loop). Every operation and filter that can
  multiply the size of its inputs is checked *before* it runs, and a template's text as it is made:
  a result of more than ``MAX_TEXT`` characters or items is refused. The others make values no
  larger than what they were given, and arguments are already limited by the request size.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sized
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# the largest string or list one template operation may make
MAX_TEXT = 16 * 1024 * 1024
# the longest one template may render
TIME_LIMIT_S = 1.0
# the largest integer power a template may compute, in bits
MAX_INT_BITS = 65536
# a width or precision in a format string: "%99999999d", "{:99999999}"
_FORMAT_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{8,})|%[-#0 +]*\d*\.(\*|\d{8,})|\{[^{}]*:[^{}]*\d{8,}")


class TemplateTimeout(BaseException):
    """Raised in a render that went past its time. A BaseException, so that no ``except Exception``
    inside Jinja2 takes it for the template's own error and carries on."""


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 0


def _refuse(what: str, size: float) -> None:
    if size > MAX_TEXT:
        raise SecurityError(
            f"{what} would make a value of {size:.0f} characters or items, more than {MAX_TEXT}"
        )


def _check_format(template: Any) -> None:
    if isinstance(template, str) and _FORMAT_WIDTH.search(template):
        raise SecurityError("a format width or precision this large is not allowed")


def _check_repeat(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(count, int) and isinstance(sequence, str | list | tuple):
            _refuse("this repetition", _length(sequence) * count)


def _check_power(base: Any, exponent: Any) -> None:
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if big and exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise SecurityError(f"a power of more than {MAX_INT_BITS} bits is not allowed")


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, Sized):
        _refuse("this join", _length(separator) * len(items) + sum(_length(item) for item in items))


def _check_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        found = text.count(old) if count is None or count < 0 else min(count, text.count(old))
        _refuse("this replace", len(text) + found * max(0, len(new) - len(old)))


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The methods of ``str`` that can make a longer string than they were given. The arguments to
    call with come back (an iterator made a list, so that it could be measured)."""
    owner = getattr(getattr(method, "__wrapped__", method), "__self__", None)
    if not isinstance(owner, str):
        return args
    name, first = method.__name__, args[0] if args else None
    if name in ("format", "format_map"):
        _check_format(owner)
    elif name == "join" and args:
        args = (_measurable(first), *args[1:])
        _check_join(owner, args[0])
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, *args[:3])
    elif name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        _refuse(f"this {name}", first)
    elif name == "expandtabs":
        tab = kwargs.get("tabsize", 8 if first is None else first)
        _refuse("this expandtabs", len(owner) * tab if isinstance(tab, int) else 0)
    return args


def _guarded(check: Callable[..., Any], run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` behind ``check``, which raises, or may hand back the arguments to run with instead (an
    iterator made a list, so that it could be measured)."""

    def filter_(*args: Any, **kwargs: Any) -> Any:
        replaced = check(*args, **kwargs)
        if replaced is not None:
            args, kwargs = replaced
        return run(*args, **kwargs)

    if hasattr(run, "jinja_pass_arg"):  # how Jinja2 knows to pass the context first
        filter_.jinja_pass_arg = run.jinja_pass_arg  # type: ignore[attr-defined]
    return filter_


def _measurable(items: Any) -> Any:
    """A list of an iterator's items (bounded by the time limit), anything else as it is."""
    return items if isinstance(items, Sized) or not isinstance(items, Iterable) else list(items)


def _filter_checks() -> dict[str, Callable[..., None]]:
    """The filters that can make a value larger than their inputs, and how each is bounded (the
    first argument of a filter that takes an eval context is that context)."""

    def indent(text: Any, width: Any = 4, *_: Any, **__: Any) -> None:
        lines = str(text).count("\n") + 1
        _refuse("this indent", len(str(text)) + lines * (width if isinstance(width, int) else _length(width)))

    def wordwrap(
        _env: Any, text: Any, width: Any = 79, _long: Any = True, wrapstring: Any = None, *_: Any, **kw: Any
    ) -> None:
        wrapstring = kw.get("wrapstring", wrapstring)
        _refuse("this wordwrap", _length(text) * (1 + _length(wrapstring or "\n")))

    def join(ctx: Any, items: Any, *args: Any, **kw: Any) -> Any:
        items = _measurable(items)
        _check_join(kw.get("d", args[0] if args else ""), items)
        return (ctx, items, *args), kw

    def replace(_ctx: Any, text: Any, old: Any, new: Any, count: Any = None) -> None:
        _check_replace(text, old, new, count)

    def format_(template: Any, *args: Any, **kwargs: Any) -> None:
        _check_format(template)

    def center(text: Any, width: Any = 80) -> None:
        _refuse("this center", width if isinstance(width, int) else 0)

    def tojson(_ctx: Any, value: Any, indent: Any = None) -> None:
        if isinstance(indent, int) and indent > 64:
            raise SecurityError("an indent of more than 64 is not allowed")

    def batch(items: Any, count: Any, *_: Any, **__: Any) -> None:  # fills the last batch
        _refuse("this batch", _length(items) + (count if isinstance(count, int) else 0))

    def slice_(_ctx: Any, items: Any, count: Any, *_: Any, **__: Any) -> None:  # fills every slice
        _refuse("this slice", _length(items) + (count if isinstance(count, int) else 0))

    def sum_(env: Any, items: Any, *args: Any, **kw: Any) -> Any:  # adds up lists, too
        items = _measurable(items)
        start = kw.get("start", args[1] if len(args) > 1 else 0)
        if isinstance(start, str | list | tuple):
            _refuse("this sum", _length(start) + sum(_length(item) for item in items))
        return (env, items, *args), kw

    return {
        "indent": indent,
        "wordwrap": wordwrap,
        "join": join,
        "replace": replace,
        "format": format_,
        "center": center,
        "tojson": tojson,
        "batch": batch,
        "slice": slice_,
        "sum": sum_,
    }


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with every size-multiplying operation checked before it runs."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, check in _filter_checks().items():
            self.filters[name] = _guarded(check, self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%":
            _check_format(left)
        elif operator == "+" and isinstance(left, str | list | tuple):
            _refuse("this concatenation", _length(left) + _length(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        args = _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``nodes.get``, ``item.items``: in JSON data a key wins over the method of the same name
        (Jinja2 prefers the method), so that a node or a field may be called anything."""
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def join_checked(self, parts: tuple[Any, ...]) -> str:
        """The ``~`` operator."""
        texts = [str(part) for part in parts]
        _refuse("this ~", sum(len(text) for text in texts))
        return "".join(texts)

    @staticmethod
    def concat(chunks: Iterable[str]) -> str:  # type: ignore[override]
        """A template's text (and a ``{% set %}`` block's), measured as it is made."""
        kept: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            _refuse("this template's text", size)
            kept.append(chunk)
        return "".join(kept)


class _CodeGenerator(CodeGenerator):
    """Jinja2's code generator, but ``a ~ b`` goes through :meth:`Sandbox.join_checked`."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


Sandbox.code_generator_class = _CodeGenerator


class _Watchdog:
    """Interrupts renders that run past their time. One thread for the process, started by the first
    render; a render registers itself (a lock and a dict entry: well under a microsecond)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._running: dict[int, list[Any]] = {}  # thread id -> [deadline, interrupted, thread id]
        self._thread: threading.Thread | None = None

    def enter(self) -> list[Any]:
        """Start timing a render in this thread; pass what it returns to :meth:`leave`, in a
        ``finally``, inside a ``try`` that catches :class:`TemplateTimeout`."""
        entry = [time.monotonic() + self.limit_s, False, threading.get_ident()]
        with self._lock:
            self._running[entry[2]] = entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="flowdeck-templates", daemon=True)
                self._thread.start()
        return entry

    def leave(self, entry: list[Any]) -> None:
        with self._lock:
            if self._running.get(entry[2]) is entry:
                del self._running[entry[2]]
            if entry[1]:  # an interruption that came as the render ended must not outlive it
                _async_raise(entry[2], None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(0.1, self.limit_s / 4))
            now = time.monotonic()
            with self._lock:
                for thread_id, entry in self._running.items():
                    if not entry[1] and now > entry[0]:
                        entry[1] = True
                        _async_raise(thread_id, TemplateTimeout)


def _async_raise(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


watchdog = _Watchdog(TIME_LIMIT_S)
