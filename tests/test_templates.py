"""Templates: native values for a whole expression, text otherwise, and no way out of the sandbox."""

from __future__ import annotations

import pytest
from jinja2 import TemplateSyntaxError

from flowdeck.engine.templates import Template, TemplateRenderError, compile_value, render_value

CONTEXT = {
    "input": {"n": 3, "city": "Oslo", "tags": ["a", "b"]},
    "nodes": {"a": {"x": 1.5}},
    "execution": {"id": "e1"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ input.n }}", 3),
        ("{{ input.n * 2 }}", 6),
        ("  {{ nodes.a }}  ", {"x": 1.5}),
        ("{{ input.tags }}", ["a", "b"]),
        ("{{ input.n > 2 }}", True),
        ("{{ none }}", None),
        ("{{ {'k': input.city} }}", {"k": "Oslo"}),
        ("{{ (1, 2) }}", [1, 2]),
    ],
)
def test_a_whole_expression_keeps_its_native_value(source: str, expected: object) -> None:
    assert Template(source).render(CONTEXT) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("n={{ input.n }}", "n=3"),
        ("{{ input.city }} has {{ input.tags | length }} tags", "Oslo has 2 tags"),
        ("{% for t in input.tags %}{{ t }};{% endfor %}", "a;b;"),
        ("{{ input.n }}{{ input.n }}", "33"),
    ],
)
def test_any_other_string_renders_as_text(source: str, expected: str) -> None:
    assert Template(source).render(CONTEXT) == expected


def test_compile_and_render_nested_values() -> None:
    compiled = compile_value({"a": ["{{ input.n }}", "plain", 7], "b": {"c": "{{ input.city | upper }}"}})
    assert render_value(compiled, CONTEXT) == {"a": [3, "plain", 7], "b": {"c": "OSLO"}}


@pytest.mark.parametrize("source", ["{{ input.missing }}", "x {{ nodes.b.y }}", "{{ nodes.a.x.y.z }}"])
def test_a_missing_key_is_a_clear_error(source: str) -> None:
    with pytest.raises(TemplateRenderError, match=r"undefined|no attribute"):
        Template(source).render(CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "x{{ ''.__class__ }}",
        "{{ input.__class__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ range.__self__ }}",
        "{{ input.update({'n': 1}) }}",
    ],
)
def test_sandbox_escapes_fail(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        Template(source).render(CONTEXT)
    assert CONTEXT["input"]["n"] == 3


def test_a_result_that_is_not_json_data_is_refused() -> None:
    with pytest.raises(TemplateRenderError, match="not JSON data"):
        Template("{{ cycler }}").render(CONTEXT)


def test_bad_syntax_is_found_when_compiling() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{{ input.n + }}")
