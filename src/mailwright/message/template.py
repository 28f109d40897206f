"""Message templates of the HTTP sending API: Jinja2 in its immutable sandbox.

``render(template, variables)`` fills a subject, a text and an html part; ``check(template)``
compiles them so a stored template is refused on its syntax before it is ever used.

Invariants:
- templates run in ``ImmutableSandboxedEnvironment``: no attribute starting with "_", no method
  that changes a list, dict or set, no file system loader (include, import and extends fail),
  no extensions; the html part is autoescaped, the subject and text are not;
- a variable the caller did not give is an error (``StrictUndefined``), never empty text:
  :class:`MissingVariable` names it;
- a rendered part is at most 1 MiB of UTF-8: output is counted as it streams out of the
  template, and a string or list repeated with ``*`` past the limit is refused before it is
  built; the subject is one line;
- every error of a template, at compile or render time, is a :class:`TemplateError` naming the
  part ("subject", "text" or "html").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailwright.core.errors import MailwrightError

MAX_OUTPUT = 1024 * 1024  # octets of UTF-8 in one rendered part
# Beyond this, ``**`` computes integers of hundreds of thousands of digits: CPU, not mail.
MAX_EXPONENT = 10_000
COMPILE_CACHE = 256  # compiled templates kept (by source and escaping)

_UNDEFINED_NAME = re.compile(r"'([^']*)' is undefined")
_MISSING_MEMBER = re.compile(r"has no (?:attribute|element) (?:'([^']*)'|\"([^\"]*)\"|(-?\d+))$")


class TemplateError(MailwrightError):
    """A template that cannot be compiled or rendered; ``field`` is the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingVariable(TemplateError):
    """The template uses a variable (or a member of one) the caller did not give."""

    def __init__(self, field: str, name: str) -> None:
        super().__init__(field, f"missing variable '{name}'")
        self.name = name


@dataclass(frozen=True, slots=True)
class Template:
    subject: str = ""
    text: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


def check(template: Template) -> None:
    """Compile every part; TemplateError(part, "line N: ...") for a syntax error."""
    for field, source, escape in _parts(template):
        _compile(field, source, escape)


def render(template: Template, variables: Mapping[str, object]) -> Rendered:
    """The template filled with ``variables``."""
    subject = _render("subject", template.subject, variables, autoescape=False)
    if "\r" in subject or "\n" in subject:
        raise TemplateError("subject", "the subject must be one line")
    text = None if template.text is None else _render("text", template.text, variables, False)
    html = None if template.html is None else _render("html", template.html, variables, True)
    return Rendered(subject=subject, text=text, html=html)


class _TooLarge(Exception):
    """A part would render to more than MAX_OUTPUT."""


class _Sandbox(ImmutableSandboxedEnvironment):
    # Intercepting these also keeps the compiler from folding ``'x' * 10**9`` into a constant
    # at compile time (jinja2 does not fold intercepted operators).
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT
                ):
                    raise _TooLarge
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent above {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


@functools.cache
def _environment(autoescape: bool) -> _Sandbox:
    """One environment per escaping mode; a pure function of nothing but that."""
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=autoescape)
    # lipsum() makes any amount of placeholder text: no use in real mail.
    env.globals.pop("lipsum", None)
    return env


@functools.lru_cache(maxsize=COMPILE_CACHE)
def _compiled(source: str, autoescape: bool) -> jinja2.Template:
    return _environment(autoescape).from_string(source)


def _compile(field: str, source: str, autoescape: bool) -> jinja2.Template:
    try:
        return _compiled(source, autoescape)
    except jinja2.TemplateSyntaxError as exc:  # TemplateAssertionError too (unknown filter)
        raise TemplateError(field, f"line {exc.lineno}: {exc.message}") from None


def _parts(template: Template) -> list[tuple[str, str, bool]]:
    parts = [("subject", template.subject, False)]
    if template.text is not None:
        parts.append(("text", template.text, False))
    if template.html is not None:
        parts.append(("html", template.html, True))
    return parts


def _render(field: str, source: str, variables: Mapping[str, object], autoescape: bool) -> str:
    compiled = _compile(field, source, autoescape)
    chunks: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(dict(variables)):
            size += len(chunk.encode("utf-8", "surrogatepass"))
            if size > MAX_OUTPUT:
                raise _TooLarge
            chunks.append(chunk)
    except _TooLarge:
        raise TemplateError(field, "rendered text exceeds 1 MiB") from None
    except jinja2.UndefinedError as exc:
        name = _missing_name(source, autoescape, str(exc))
        if name is None:
            raise TemplateError(field, str(exc)) from None
        raise MissingVariable(field, name) from None
    except SecurityError as exc:
        raise TemplateError(field, f"not allowed in a template: {exc}") from None
    except Exception as exc:  # boundary: a template is the caller's code, and anything it
        # does wrong at run time (1/0, "a" + 1, a range too big, include without a loader)
        # is the caller's error, reported against the part, never a crash of the request.
        raise TemplateError(field, str(exc) or type(exc).__name__) from None
    return "".join(chunks)


def _missing_name(source: str, autoescape: bool, message: str) -> str | None:
    """The name to report for jinja2's UndefinedError ``message``: the variable for
    "'x' is undefined"; for a missing member ("... has no attribute 'name'") the path that
    ends in it (``user.name``) if the template has exactly one such, else the member alone;
    None for any other message."""
    undefined = _UNDEFINED_NAME.fullmatch(message)
    if undefined:
        return undefined.group(1)
    member = _MISSING_MEMBER.search(message)
    if member is None:
        return None
    quoted, double, index = member.groups()
    key: str | int = int(index) if index is not None else quoted if quoted is not None else double
    # Parsed again only on this error path; the source compiled already, so it parses.
    tree = _environment(autoescape).parse(source)
    paths = {
        path
        for node in tree.find_all((nodes.Getattr, nodes.Getitem))
        if (path := _member_path(node, key)) is not None
    }
    return paths.pop() if len(paths) == 1 else str(key)


def _member_path(node: nodes.Node, key: str | int) -> str | None:
    """``user.name`` for the node of ``user.name`` or ``user["name"]`` when its last member is
    ``key``; None for anything else (a member of a call's or a filter's result, ...)."""
    step = _member(node)
    if step is None or step[0] != key:
        return None
    parts: list[str] = []
    while step is not None:
        member, node = step
        named = isinstance(member, str) and member.isidentifier()
        parts.append(f".{member}" if named else f"[{member!r}]")
        step = _member(node)
    if not isinstance(node, nodes.Name):
        return None
    return node.name + "".join(reversed(parts))


def _member(node: nodes.Node) -> tuple[str | int, nodes.Node] | None:
    """(member, the node it is taken from) for ``x.member`` and ``x["member"]`` / ``x[0]``."""
    if isinstance(node, nodes.Getattr):
        return node.attr, node.node
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        value = node.arg.value
        if isinstance(value, str | int):
            return value, node.node
    return None
