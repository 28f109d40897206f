"""Templates of the sending API: rendering, escaping, missing variables, syntax errors, the
sandbox and the output cap."""

from __future__ import annotations

import pytest

from mailwright.message.template import (
    MAX_OUTPUT,
    MissingVariable,
    Rendered,
    Template,
    TemplateError,
    check,
    render,
)


def test_renders_every_part() -> None:
    template = Template(
        subject="Hello {{ name }}",
        text="Dear {{ name }},\n{% for i in items %}{{ i|upper }}{% endfor %}\n",
        html="<p>{{ name }}: {{ items|join(', ') }}</p>",
    )
    rendered = render(template, {"name": "Ann", "items": ["a", "b"]})
    assert rendered == Rendered(subject="Hello Ann", text="Dear Ann,\nAB", html="<p>Ann: a, b</p>")


def test_absent_parts_stay_absent() -> None:
    assert render(Template(subject="s"), {}) == Rendered(subject="s", text=None, html=None)
    assert render(Template(), {}) == Rendered(subject="", text=None, html=None)


def test_html_is_escaped_and_text_is_not() -> None:
    template = Template(subject="{{ name }}", text="{{ name }}", html="<p>{{ name }}</p>")
    rendered = render(template, {"name": "<b>&"})
    assert rendered.subject == "<b>&"
    assert rendered.text == "<b>&"
    assert rendered.html == "<p>&lt;b&gt;&amp;</p>"


def test_filters_loops_and_conditions() -> None:
    template = Template(
        text=(
            "{% for user in users %}{{ loop.index }}. {{ user.name|title }}"
            "{% if not loop.last %}, {% endif %}{% endfor %}"
            " | {{ total|round(1) }} | {{ missing|default('none') }}"
            " | {{ '%s items' % count }} | {{ 'ab' * 3 }} | {{ 2 ** 10 }}"
        )
    )
    variables = {
        "users": [{"name": "ann lee"}, {"name": "bob"}],
        "total": 2.345,
        "count": 3,
    }
    assert render(template, variables).text == (
        "1. Ann Lee, 2. Bob | 2.3 | none | 3 items | ababab | 1024"
    )


@pytest.mark.parametrize(
    ("template", "variables", "field", "name"),
    [
        (Template(subject="Hi {{ first_name }}"), {}, "subject", "first_name"),
        (Template(text="{{ user.name }}"), {"user": {}}, "text", "user.name"),
        (Template(html="{{ user['name'] }}"), {"user": {}}, "html", "user.name"),
        (Template(text="{{ a.b.c }}"), {"a": {"b": {}}}, "text", "a.b.c"),
        (Template(text="{{ user.name }}{{ a[1.5] }}"), {"user": {}, "a": {}}, "text", "user.name"),
        (Template(text="{{ items[3] }}"), {"items": [1]}, "text", "items[3]"),
        (Template(text="{{ user['it\\'s'] }}"), {"user": {}}, "text", 'user["it\'s"]'),
        # Two paths end in "name": only the member can be named.
        (Template(text="{{ a.name }}{{ b.name }}"), {"a": {}, "b": {}}, "text", "name"),
        # A member of a filter's result has no path.
        (Template(text="{{ (a|first).x }}"), {"a": [{}]}, "text", "x"),
        (Template(text="{% if flag %}yes{% endif %}"), {}, "text", "flag"),
        (Template(text="{% for x in rows %}{% endfor %}"), {}, "text", "rows"),
        (Template(text="{{ lipsum(2) }}"), {}, "text", "lipsum"),
    ],
)
def test_missing_variables_are_named(
    template: Template, variables: dict[str, object], field: str, name: str
) -> None:
    with pytest.raises(MissingVariable) as caught:
        render(template, variables)
    assert caught.value.field == field
    assert caught.value.name == name
    assert caught.value.message == f"missing variable '{name}'"
    assert str(caught.value) == f"{field}: missing variable '{name}'"


def test_other_undefined_errors_keep_their_message() -> None:
    # An undefined value with a message of its own names no variable.
    with pytest.raises(TemplateError) as caught:
        render(Template(text="{{ items|first }}"), {"items": []})
    assert not isinstance(caught.value, MissingVariable)
    assert caught.value.field == "text"
    assert caught.value.message == "No first item, sequence was empty."


@pytest.mark.parametrize(
    ("template", "field", "line"),
    [
        (Template(subject="{% if %}"), "subject", 1),
        (Template(text="a\nb\n{{ x }"), "text", 3),
        (Template(html="<p>\n{% for x in y %}"), "html", 2),
        (Template(text="{{ x|nosuchfilter }}"), "text", 1),
    ],
)
def test_syntax_errors_name_part_and_line(template: Template, field: str, line: int) -> None:
    for action in (lambda: check(template), lambda: render(template, {"x": 1, "y": []})):
        with pytest.raises(TemplateError) as caught:
            action()
        assert not isinstance(caught.value, MissingVariable)
        assert caught.value.field == field
        assert caught.value.message.startswith(f"line {line}: ")


def test_check_accepts_a_valid_template() -> None:
    check(Template(subject="{{ a }}", text="{{ b }}", html="{{ c }}"))


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ user.__class__ }}",
        "{{ user.update({'a': 1}) }}",
        "{% set x = [] %}{{ x.append(1) }}",
        "{{ 2 ** 100000 }}",
    ],
)
def test_sandbox_refuses(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(Template(html=source), {"user": {}})
    assert caught.value.field == "html"
    assert caught.value.message.startswith("not allowed in a template: ")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ 'a' + 1 }}", 'can only concatenate str (not "int") to str'),
        ("{% include 'other.html' %}", "no loader for this environment specified"),
        ("{{ range(10**6)|list }}", "Range too big"),
    ],
)
def test_runtime_errors_are_template_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(Template(text=source), {})
    assert caught.value.field == "text"
    assert caught.value.message.startswith(message)


def test_error_without_a_message_is_named_by_its_type() -> None:
    class Broken:
        def __str__(self) -> str:
            raise LookupError

    with pytest.raises(TemplateError) as caught:
        render(Template(text="{{ thing }}"), {"thing": Broken()})
    assert caught.value.message == "LookupError"


@pytest.mark.parametrize("subject", ["a\nb", "{{ x }}", "a\rb", "a\r\nb"])
def test_subject_must_be_one_line(subject: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(Template(subject=subject), {"x": "evil\r\nBcc: x@example.test"})
    assert caught.value.field == "subject"
    assert caught.value.message == "the subject must be one line"


def test_a_single_trailing_newline_of_the_subject_source_is_dropped() -> None:
    assert render(Template(subject="Hello\n"), {}).subject == "Hello"


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 2000000 }}",
        "{{ 2000000 * 'x' }}",
        "{{ [1] * 2000000 }}",
        # Many small pieces: caught as the output streams.
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
        "{{ text }}",
    ],
)
def test_output_is_capped_at_1_mib(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(Template(text=source), {"text": "é" * (MAX_OUTPUT // 2 + 1)})
    assert caught.value.field == "text"
    assert caught.value.message == "rendered text exceeds 1 MiB"


def test_output_just_under_the_cap_renders() -> None:
    rendered = render(Template(text="{{ 'x' * n }}"), {"n": MAX_OUTPUT})
    assert rendered.text == "x" * MAX_OUTPUT


def test_compiled_templates_are_reused() -> None:
    template = Template(text="{{ n }}")
    assert [render(template, {"n": n}).text for n in range(3)] == ["0", "1", "2"]
