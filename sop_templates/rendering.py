"""Email templates rendered in Jinja2's sandbox: the one way SOP emails (written by SOP
owners, so untrusted) and escalation notices become text, at validation and at send time.

A plain `jinja2.Environment` lets a template reach Python internals
(`cycler.__init__.__globals__.os`) and run commands on the host; the immutable sandbox
refuses underscored attributes, unsafe callables and mutating methods. On top of it:
caps on a part's source and on what it renders, no globals beyond a bounded `range`, and
`*` / `**` that cannot build a giant string or number. Any failure is a `RenderError`
naming the part, never a Python exception from inside the template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, FileSystemLoader, StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Characters of one part's source (subject, text or html): far above any real email.
SOURCE_LIMIT = 64 * 1024
# Characters one part may render to: an email, not a data dump; also bounds the outbox row.
RENDERED_LIMIT = 256 * 1024
# Items `range()` may produce in a template (Jinja's own sandbox allows 100 000).
RANGE_LIMIT = 1_000
# Bits a `**` result may have: enough for any amount, not for a number that eats the CPU.
POWER_LIMIT_BITS = 4_096


class RenderError(ValueError):
    """A template part that cannot be rendered (syntax, undefined name, unsafe, too big)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body_text: str
    body_html: str | None


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` checked before they run."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


def _check_repeat(sequence: Any, times: Any) -> None:
    repeatable = isinstance(sequence, str | list | tuple) and isinstance(times, int)
    if repeatable and len(sequence) * times > RENDERED_LIMIT:
        raise SecurityError(f"repetition longer than {RENDERED_LIMIT} items")


def _check_power(base: Any, exponent: Any) -> None:
    integers = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integers and max(abs(base).bit_length(), 1) * exponent > POWER_LIMIT_BITS:
        raise SecurityError(f"power larger than {POWER_LIMIT_BITS} bits")


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE_LIMIT:
        raise SecurityError(f"range longer than {RANGE_LIMIT} items")
    return numbers


def _sandbox(*, autoescape: Any, loader: BaseLoader | None = None) -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,  # a missing value fails loudly, never renders as ""
        autoescape=autoescape,
        keep_trailing_newline=True,
        loader=loader,
    )
    # Jinja's default globals (cycler, joiner, namespace, lipsum) serve no email and give a
    # template state to grow or CPU to burn: only a bounded range remains.
    env.globals.clear()
    env.globals["range"] = _bounded_range
    return env


_TEXT = _sandbox(autoescape=False)
_HTML = _sandbox(autoescape=True)


def render(part: str, source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """One part of an inline template (an SOP's email), or `RenderError` naming `part`."""
    if len(source) > SOURCE_LIMIT:
        raise RenderError(part, f"template is {len(source)} characters, more than {SOURCE_LIMIT}")
    return _run(part, lambda: _compiled(source, html), context)


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    # SOP versions are immutable and few: compile each part once per process.
    return (_HTML if html else _TEXT).from_string(source)


def render_email(
    subject: str, text: str, html: str | None, context: Mapping[str, Any]
) -> RenderedEmail:
    """An SOP email's three parts; the subject on one line (a newline would add headers)."""
    return RenderedEmail(
        subject=one_line(render("subject", subject, context)),
        body_text=render("text", text, context),
        body_html=render("html", html, context, html=True) if html is not None else None,
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def directory_environment(directory: Path) -> ImmutableSandboxedEnvironment:
    """Sandboxed templates from files (escalation notices); `.html.j2` files autoescape."""
    return _sandbox(
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        loader=FileSystemLoader(directory),
    )


def render_file(env: ImmutableSandboxedEnvironment, name: str, context: Mapping[str, Any]) -> str:
    """A template file of `env`; `TemplateNotFound` passes through for optional parts."""
    template = env.get_template(name)
    return _run(name, lambda: template, context)


def _run(part: str, template: Callable[[], Template], context: Mapping[str, Any]) -> str:
    try:
        return _capped(part, template().generate(dict(context)))
    except RenderError:
        raise
    except Exception as exc:
        # Whatever the template does wrong (a syntax error, an undefined name, an unsafe
        # attribute, 1/0, a bad filter argument) is the template's fault, not an outage.
        raise RenderError(part, f"does not render: {exc}") from None


def _capped(part: str, chunks: Iterable[str]) -> str:
    """Join the streamed output, stopping as soon as it passes the cap."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > RENDERED_LIMIT:
            raise RenderError(part, f"renders to more than {RENDERED_LIMIT} characters")
        out.append(chunk)
    return "".join(out)
