"""The template layer: sandbox, native rendering, fast path, static checks, masking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.template import (
    Masker,
    TemplateError,
    compile_value,
    find_problems,
    is_templated,
    jinja_compile_count,
    referenced_result_fields,
    referenced_roots,
    referenced_steps,
    render_condition,
)
from runner.template import render as T


def CTX() -> dict[str, Any]:
    return {
        "inputs": {"n": 5, "name": "bob", "flag": True, "nothing": None, "ratio": 0.5},
        "steps": {
            "prev": {
                "result": {"a": [1, {"b": 2}], "items": 3, "files": ["x.py", "y.py"], "k-1": "dash"},
                "text": "hello",
                "status": "completed",
            },
            "empty": {"result": [], "text": "", "status": "failed"},
        },
        "item": "x.py",
        "index": 0,
        "run": {"id": "r1", "status": "completed"},
        "workflow": {"name": "wf"},
    }


def render(value: Any, ctx: dict[str, Any] | None = None) -> Any:
    return compile_value(value).render(CTX() if ctx is None else ctx)


def jinja_only(text: str, ctx: dict[str, Any]) -> Any:
    """Render through the Jinja compiler, bypassing the fast path."""
    return T._compile_jinja(text).render(ctx)


# --------------------------------------------------------------------------- native types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ inputs.n }}", 5),
        ("  {{ inputs.n }}\n", 5),
        ("{{ inputs.ratio }}", 0.5),
        ("{{ inputs.flag }}", True),
        ("{{ inputs.nothing }}", None),
        ("{{ steps.prev.result.files }}", ["x.py", "y.py"]),
        ("{{ steps.prev.result.a[1] }}", {"b": 2}),
        ("{{ steps.prev.result.a.1.b }}", 2),
        ("{{ steps.prev.result['k-1'] }}", "dash"),
        ('{{ steps["prev"].text }}', "hello"),
        ("{{ steps.prev.result.files[-1] }}", "y.py"),
        # the same through Jinja expressions
        ("{{ inputs.n + 1 }}", 6),
        ("{{ inputs.n > 1 }}", True),
        ("{{ none }}", None),
        ("{{ [inputs.n, 'a'] }}", [5, "a"]),
        ("{{ {'k': inputs.n} }}", {"k": 5}),
        ("{{ steps.prev.result.files | length }}", 2),
        ("{{ steps.prev.result.files | map('upper') }}", ["X.PY", "Y.PY"]),  # generator drained
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ steps.prev.text | upper }}", "HELLO"),
        ("{{ steps.prev.result.a[1] }}{# a comment is not text #}", {"b": 2}),
    ],
)
def test_lone_expression_keeps_native_type(text: str, expected: Any) -> None:
    value = render(text)
    assert value == expected
    assert type(value) is type(expected)


def test_lone_path_returns_the_context_object_itself() -> None:
    ctx = CTX()
    assert render("{{ steps.prev.result }}", ctx) is ctx["steps"]["prev"]["result"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("r={{ steps.prev.result.a }}", 'r=[1, {"b": 2}]'),
        ("{{ inputs.n }} and {{ steps.prev.result.a[1] }}", '5 and {"b": 2}'),
        ("[{{ inputs.nothing }}]", "[]"),
        ("{{ inputs.flag }}!", "true!"),
        ("{{ inputs.n }}{{ inputs.name }}\n", "5bob\n"),  # trailing newline kept
        ("{% if inputs.n > 1 %}{{ steps.prev.result.a }}{% endif %}", '[1, {"b": 2}]'),
        ("x {{ inputs.nothing }} {{ {'é': 1} }}", 'x  {"é": 1}'),
        ("{{ inputs.n }}}", "5}"),
        ("{% raw %}{{ inputs.n }}{% endraw %}", "{{ inputs.n }}"),
    ],
)
def test_mixed_text_renders_a_string_with_json_containers(text: str, expected: str) -> None:
    assert render(text) == expected


def test_constants_are_returned_as_is_without_copies() -> None:
    const = {"a": [1, {"b": "plain text"}], "n": 3, "s": "no { template } here"}
    compiled = compile_value(const)
    assert compiled.is_constant
    assert compiled.render(CTX()) is const
    proxy = MappingProxyType({"x": 1})
    assert compile_value(proxy).render({}) is proxy
    for scalar in (1, 2.5, True, None, "text"):
        assert compile_value(scalar).render({}) is scalar

    mixed = {"fixed": {"deep": [1, 2]}, "dyn": ["{{ inputs.n }}", "lit"], "key {{ x }}": 1}
    out = compile_value(mixed).render(CTX())
    assert out == {"fixed": {"deep": [1, 2]}, "dyn": [5, "lit"], "key {{ x }}": 1}
    assert out["fixed"] is mixed["fixed"]  # constant subtree shared, not copied
    assert out is not mixed


def test_is_templated() -> None:
    assert is_templated({"a": ["x", "{{ y }}"]})
    assert is_templated("{% if x %}{% endif %}")
    assert not is_templated({"a": ["x", 1, None], "b": "{ not }"})


def test_render_condition() -> None:
    ctx = CTX()
    for text in ("false", "False", "0", "", "null", "{{ inputs.nothing }}", "{{ steps.empty.result }}",
                 "{{ 'false' }}", "{{ inputs.n < 1 }}", "{{ steps.empty.text }}", " {{ 0 }} "):  # fmt: skip
        assert render_condition(compile_value(text), ctx) is False, text
    for text in ("true", "yes", "{{ inputs.n }}", "{{ steps.prev.text | length > 0 }}", "n={{ 0 }}",
                 "{{ steps.prev.status == 'completed' }}"):  # fmt: skip
        assert render_condition(compile_value(text), ctx) is True, text
    assert render_condition(compile_value(False), ctx) is False
    assert render_condition(compile_value(True), ctx) is True


# --------------------------------------------------------------------------- fast path


PLAIN = [
    "{{ steps.prev.result }}",
    "{{ steps.prev.result.a[0] }}",
    "{{steps.prev.result.a.1.b}}",
    "{{ steps['prev'].result.items }}",
    "{{ item }}",
    "{{ index }}",
    "file {{ item }} #{{ index }} of {{ steps.prev.result.files }}",
    "{{ steps.prev.result.files[-2] }}",
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_paths_never_reach_the_jinja_compiler(text: str) -> None:
    before = jinja_compile_count()
    compiled = compile_value({"arg": text, "more": [text]})
    first = compiled.render(CTX())
    assert compiled.render(CTX()) == first
    assert jinja_compile_count() == before
    assert first["arg"] == jinja_only(text, CTX())


def test_each_distinct_template_is_compiled_once() -> None:
    text = "{{ inputs.n * 7 }} / unique-template-marker"
    before = jinja_compile_count()
    for _ in range(5):
        assert compile_value({"x": text}).render(CTX()) == {"x": "35 / unique-template-marker"}
    assert jinja_compile_count() == before + 1


@pytest.mark.parametrize(
    "text",
    [
        *PLAIN,
        "{{ steps.prev.result.items }}",  # key wins over dict.items on both paths
        "{{ steps.prev.result.keys }}",  # no such key: dict.keys, via Jinja's rules
        "{{ steps.prev.result.files.count }}",  # list method
        "{{ steps.prev.text.upper }}",  # str method
        "{{ steps.prev.text[0] }}",  # string indexing
        "{{ steps.prev.result.update }}",  # unsafe mutating method: refused on both paths
        "{{ range }}",  # a Jinja global
        "{{ inputs.n.real }}",
        "{{ inputs.nothing.x }}",
        "{{ steps.prev.result.nope }}",
        "{{ steps.prev.result.files[5] }}",
        "{{ steps.prev.result.a['x'] }}",
        "{{ missing }}",
        "{{ steps.empty.result[0] }}",
        "<{{ steps.prev.result.files.count }}>",
        "<{{ steps.prev.result.nope }}>",
    ],
)
def test_fast_path_and_jinja_agree(text: str) -> None:
    assert _outcome(lambda: render(text, CTX0)) == _outcome(lambda: jinja_only(text, CTX0))


CTX0 = CTX()  # one shared context so bound methods compare (and print) identically


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except TemplateError as exc:
        return ("error", exc.kind)


_KEYS = st.sampled_from(["a", "b", "items", "count", "upper", "keys", "x1"])
_DATA = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("ab", max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)
_SEGMENTS = st.sampled_from(
    [".a", ".b", ".items", ".count", ".upper", ".keys", ".x1", "[0]", "[1]", "[-1]", ".0", "['a']", '["b"]']
)


@settings(max_examples=300, deadline=None)
@given(
    data=_DATA,
    root=st.sampled_from(["d", "d", "d", "missing", "range"]),
    segments=st.lists(_SEGMENTS, max_size=4),
    mixed=st.booleans(),
)
def test_fast_path_matches_jinja_on_random_data(data: Any, root: str, segments: list[str], mixed: bool) -> None:
    path = root + "".join(segments)
    text = f"<{{{{ {path} }}}}>" if mixed else f"{{{{ {path} }}}}"
    assert T._fast_form(text) is not None  # the generated path is one the fast path takes
    ctx = {"d": data}
    assert _outcome(lambda: compile_value(text).render(ctx)) == _outcome(lambda: jinja_only(text, ctx))


@pytest.mark.parametrize(
    "text",
    [
        "{{ a._b }}",
        "{{ a['_b'] }}",
        "{{ true }}",
        "{{ a.none }}",
        "{{ a . b }}",
        "{{- a }}",
        "{{ a[0:1] }}",
        "{{ a | x }}",
        "{{ a }} {% if b %}{% endif %}",
        "a\r\n{{ b }}",
        "{{ self }}",
        "{{ a }} {{ b",
    ],
)
def test_not_plain_paths_go_to_jinja(text: str) -> None:
    assert T._fast_form(text) is None


# --------------------------------------------------------------------------- errors


def test_undefined_errors_name_the_path() -> None:
    with pytest.raises(TemplateError) as err:
        render({"x": "{{ steps.prev.result.missing }}"})
    assert err.value.kind == "undefined"
    assert "'steps.prev.result.missing' is undefined" in err.value.message
    assert "{{ steps.prev.result.missing }}" in err.value.message

    with pytest.raises(TemplateError, match=r"'steps.prev.result.files\[7\]' is undefined"):
        render("{{ steps.prev.result.files[7] }}")
    with pytest.raises(TemplateError, match="'steps.nope' is undefined"):
        render("file: {{ steps.nope.text }}")
    with pytest.raises(TemplateError, match="'secrets' is undefined"):
        render("{{ secrets.TOKEN }}")
    # through Jinja: its own message, plus the template text
    with pytest.raises(TemplateError, match=r"has no attribute 'missing'.*steps.prev.result.missing \| length"):
        render("{{ steps.prev.result.missing | length }}")
    # undefined values hidden inside containers are caught too
    with pytest.raises(TemplateError, match="missing"):
        render("{{ [steps.prev.result.missing] }}")
    with pytest.raises(TemplateError, match="nope"):
        render("{{ steps.prev.result.a | map(attribute='nope') | list }}")


def test_other_render_failures_become_template_errors() -> None:
    for text, fragment in [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ 'a' + 1 }}", "TypeError"),
        ("{% include 'x.html' %}", "no loader"),
    ]:
        with pytest.raises(TemplateError, match=fragment):
            render(text)


def test_syntax_errors_at_compile_and_in_find_problems() -> None:
    with pytest.raises(TemplateError) as err:
        compile_value({"a": ["{{ inputs.n "]})
    assert err.value.kind == "syntax"
    problems = find_problems("line one\n{{ inputs.n }}\n{% if x %}unclosed")
    assert len(problems) == 1
    assert "syntax error" in problems[0] and "line 3" in problems[0] and "endif" in problems[0]
    assert find_problems("{{ x | no_such_filter }}") == ["template uses unknown filter 'no_such_filter'"]
    assert find_problems("{{ x is no_such_test }}") == ["template uses unknown test 'no_such_test'"]
    assert find_problems("{% include 'other' %}") == ["template uses '{% include %}': other templates cannot be loaded"]
    assert find_problems("{{ steps.a.result | length }} plain") == []
    assert find_problems("no template") == []


def test_error_message_truncates_long_templates() -> None:
    text = "{{ steps.prev.result.missing }}" + "x" * 500
    with pytest.raises(TemplateError) as err:
        render(text)
    assert len(err.value.message) < 200
    assert err.value.template == text


# --------------------------------------------------------------------------- sandbox


HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ lipsum.__globals__['os'].system('touch {marker}') }}",
    "{{ joiner.__init__.__globals__.__builtins__['__import__']('os').system('touch {marker}') }}",
    "{{ self._TemplateReference__context }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ steps.prev.result|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ x.gi_frame.f_globals }}",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_templates_are_flagged_and_never_execute(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = payload.replace("{marker}", str(marker))
    assert find_problems(text), text
    ctx = {**CTX(), "x": (i for i in range(3))}
    with pytest.raises(TemplateError) as err:
        render(text, ctx)
    assert err.value.kind in ("security", "undefined")
    assert not marker.exists()


def test_sandbox_message_is_carried() -> None:
    with pytest.raises(TemplateError, match="access to attribute '__class__' of 'str' object is unsafe"):
        render("{{ ''.__class__ }}")
    with pytest.raises(TemplateError, match="unsafe") as err:
        render("{{ steps.prev.result.files.append(1) }}")  # immutable sandbox: no mutation
    assert err.value.kind == "security"
    assert CTX()["steps"]["prev"]["result"]["files"] == ["x.py", "y.py"]


def test_problem_messages_name_the_offending_access() -> None:
    assert find_problems("{{ a.__class__ }}") == [
        "template accesses '__class__': names starting with '_' are not allowed"
    ]
    assert find_problems("{{ _private }}") == ["template accesses '_private': names starting with '_' are not allowed"]
    assert find_problems("{{ a['_x'] }}") == ["template accesses '_x': names starting with '_' are not allowed"]
    assert find_problems("{{ f.func_globals }}") == [
        "template accesses 'func_globals': Python internals are not allowed"
    ]
    assert find_problems("{{ a.mro }}") == ["template accesses 'mro': Python internals are not allowed"]
    assert find_problems("{{ xs | map(attribute='f_globals') }}") == [
        "template accesses 'f_globals': Python internals are not allowed"
    ]


@pytest.mark.parametrize(
    "text",
    ["{{ 'a' * 10000000 }}", "{{ [0] * 2000000 }}", "{{ 3 * 'ab' * 400000 }}", "{{ 2 ** 100000 }}",
     "{{ (10 ** 3999) ** 2 }}", "{{ (10 ** 3000) * (10 ** 3000) }}", "{{ 10 ** 5000 }}", "{{ ('x' * 1000) * 1001 }}"],
)  # fmt: skip
def test_huge_repetition_and_power_are_refused(text: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(text)
    assert err.value.kind == "security"


def test_reasonable_arithmetic_still_works() -> None:
    assert render("{{ 'ab' * 3 }}") == "ababab"
    assert render("{{ [0] * 3 }}") == [0, 0, 0]
    assert render("{{ 2 ** 10 }}") == 1024
    assert render("{{ inputs.ratio * 4 }}") == 2.0
    assert render("{{ 1 ** 1000000 }}") == 1
    assert render("{{ 10 ** 3999 }}") == 10**3999  # 4,000 digits: still printable


# --------------------------------------------------------------------------- references


def test_referenced_steps() -> None:
    value = {
        "a": "{{ steps.one.result }}",
        "b": ["x", {"c": "{{ steps['two'].text }} and {{ steps[\"three\"].status }}"}],
        "d": "{% if steps.four.result.ok %}{{ inputs.x }}{% endif %}",
        "e": "{% for f in steps.five.result.files %}{{ f }}{% endfor %}",
        "f": "{{ steps.six.result | length > 0 }}",
        "g": 12,
        "h": "steps.seven (not a template)",
    }
    assert referenced_steps(value) == {"one", "two", "three", "four", "five", "six"}
    assert referenced_steps("{{ steps[some_var] }}") == set()


def test_referenced_roots() -> None:
    value = [
        "{{ inputs.x }} {{ item }} {{ index }}",
        "{% set local = run.id %}{{ local }}{% for i in range(3) %}{{ loop.index }}{{ i }}{% endfor %}",
        "{{ workflow.name ~ secrets.TOKEN }}",
        "{{ mystery.value }}",
        "{{ steps.a.result | default(dict()) }}",
    ]
    assert referenced_roots(value) == {"inputs", "item", "index", "run", "workflow", "secrets", "mystery", "steps"}


def test_referenced_result_fields() -> None:
    value = {
        "a": "{{ steps.s1.result.files }}",
        "b": "{{ steps['s2'].result['count'] + 1 }}",
        "c": "{% if steps.s3.result.ok.deep %}y{% endif %}",
        "d": "{{ steps.s4.result }} {{ steps.s5.text }} {{ steps.s6.result[0] }}",
    }
    assert referenced_result_fields(value) == {("s1", "files"), ("s2", "count"), ("s3", "ok")}


# --------------------------------------------------------------------------- masking


def test_masking_nested_values_and_echoes() -> None:
    masker = Masker(["hunter2", "", "hunter2-extended", 's3cr"et'])
    value = {
        "token": "hunter2",
        "echo": ["the agent said: my password is hunter2, ok?", {"deep": "xhunter2-extendedx"}],
        "json": '{"pw": "s3cr\\"et"}',
        "n": 42,
        "none": None,
        ("hunter2",): 1,
        "key hunter2": True,
    }
    masked = masker.mask(value)
    assert masked == {
        "token": "***",
        "echo": ["the agent said: my password is ***, ok?", {"deep": "x***x"}],
        "json": '{"pw": "***"}',
        "n": 42,
        "none": None,
        ("***",): 1,
        "key ***": True,
    }
    assert value["token"] == "hunter2"  # a copy: the original is untouched
    assert masker.mask_text("a hunter2 b hunter2") == "a *** b ***"
    assert masker.mask(7) == 7


def test_no_secrets_costs_nothing() -> None:
    masker = Masker([])
    value = {"a": ["b"]}
    assert masker.mask(value) is value
    assert masker.mask_text("hunter2") == "hunter2"
    assert not masker and Masker([""]).mask(value) is value and Masker(["x"])


# --------------------------------------------------------------------------- imports


def test_import_does_not_pull_in_mcp() -> None:
    code = "import sys, runner.template; sys.exit(1 if 'mcp' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
