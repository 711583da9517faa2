"""Templates: native values for a whole expression, text otherwise, and no way out of the sandbox."""

from __future__ import annotations

import time

import pytest
from jinja2 import TemplateSyntaxError

from flowdeck.engine.sandbox import watchdog
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


def test_a_key_wins_over_a_method_of_the_same_name() -> None:
    context = {"nodes": {"get": {"body": 1}, "items": [2]}}
    assert Template("{{ nodes.get.body + nodes.items[0] }}").render(context) == 3
    assert Template("{{ nodes.keys() | list }}").render(context) == ["get", "items"]


def test_a_result_that_is_not_json_data_is_refused() -> None:
    with pytest.raises(TemplateRenderError, match="not JSON data"):
        Template("{{ cycler }}").render(CONTEXT)


def test_bad_syntax_is_found_when_compiling() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{{ input.n + }}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 2 ** 100000000 }}",
        "{{ 'a'.center(10**9) }}",
        "{{ 'a'.zfill(10**9) }}",
        "{{ '%099999999d' % 1 }}",
        "{{ '{:999999999}'.format(1) }}",
        "{{ ('a' * 10000000).replace('a', 'bb') }}",
        "{{ 'x' | indent(10**9) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ [1] | batch(10**9, 0) | list }}",
        "{{ range(10) | join('x' * 10000000) }}",
        "{{ ('x' * 10000000) + ('x' * 10000000) }}",
        "{{ input.city * input.big }}",
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{{ range(1000) | map('string') | join('x' * 100000) }}",
        "{{ ('y' * 100000).join(range(1000) | map('string')) }}",
    ],
)
def test_an_operation_that_would_make_a_huge_value_is_refused_before_it_runs(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError, match=r"would make a value of|is not allowed"):
        Template(source).render({**CONTEXT, "input": {"city": "Oslo", "big": 10**9}})
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '{:,}'.format(123456789012) }}", "123,456,789,012"),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ 2 ** 64 }}", 2**64),
        ("{{ [[1], [2]] | sum(start=[]) }}", [1, 2]),
        ("{{ input.tags | join(', ') }}", "a, b"),
        ("{{ '%05.1f' % 3.14159 }}", "003.1"),
        ("{{ 'a' ~ input.n ~ 'b' }}", "a3b"),
        ("x{{ input.n ~ '!' }}", "x3!"),
        ("{{ range(3) | map('string') | join('-') }}", "0-1-2"),
        ("{{ '+'.join(input.tags) }}", "a+b"),
    ],
)
def test_the_same_operations_within_bounds_work(source: str, expected: object) -> None:
    assert Template(source).render(CONTEXT) == expected


def test_a_template_that_runs_forever_is_stopped_at_its_time_limit() -> None:
    forever = Template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError, match=r"ran longer than 1 s, so it was stopped"):
        forever.render(CONTEXT)
    assert 1.0 <= time.perf_counter() - started < 3.0
    assert Template("{{ input.n + 1 }}").render(CONTEXT) == 4  # the thread goes on as before


def test_interruptions_never_outlive_their_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Renders that end right at their deadline, many times: each either ends or is stopped, and no
    interruption lands in the code that runs after it."""
    monkeypatch.setattr(watchdog, "limit_s", 0.02)
    outcomes = set()
    for size in [10, 2000, 4000, 8000, 16000, 200000] * 8:
        template = Template(
            f"{{% for i in range({size}) %}}{{% for j in range(20) %}}{{% endfor %}}{{% endfor %}}"
        )
        try:
            template.render(CONTEXT)
            outcomes.add("ended")
        except TemplateRenderError:
            outcomes.add("stopped")
        for _ in range(2000):  # plain Python after the render: an interruption would land here
            pass
    assert outcomes == {"ended", "stopped"}
