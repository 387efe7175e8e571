"""Email templates rendered in the sandbox (`sandbox.py`): the one way SOP emails (written by
SOP owners, so untrusted) and escalation notices become text, at validation and at send time.

Caps on a part's source and on what it renders; any failure is a `RenderError` naming the
part, never a Python exception from inside the template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, Template

from sop_templates.sandbox import SIZE_LIMIT, EmailSandbox, work_budget

# Characters of one part's source (subject, text or html): far above any real email.
SOURCE_LIMIT = 64 * 1024
# Characters one part may render to: an email, not a data dump; also bounds the outbox row.
RENDERED_LIMIT = SIZE_LIMIT


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


_TEXT = EmailSandbox(autoescape=False)
_HTML = EmailSandbox(autoescape=True)


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


def directory_environment(directory: Path) -> EmailSandbox:
    """Sandboxed templates from files (escalation notices); `.html.j2` files autoescape."""
    return EmailSandbox(
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        loader=FileSystemLoader(directory),
    )


def render_file(env: EmailSandbox, name: str, context: Mapping[str, Any]) -> str:
    """A template file of `env`; `TemplateNotFound` passes through for optional parts."""
    template = env.get_template(name)
    return _run(name, lambda: template, context)


def _run(part: str, template: Callable[[], Template], context: Mapping[str, Any]) -> str:
    try:
        with work_budget():
            return _capped(part, template().generate(dict(context)))
    except RenderError:
        raise
    except Exception as exc:
        # Whatever the template does wrong (a syntax error, an undefined name, an unsafe
        # attribute, 1/0, too much work) is the template's fault, not an outage.
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
