"""The Jinja2 environment SOP emails run in: the immutable sandbox, bounded in size and work.

Jinja2's `ImmutableSandboxedEnvironment` keeps a template away from Python internals
(`cycler.__init__.__globals__.os`), unsafe callables and mutation. It does not bound what a
template may build or how long it may run, and an SOP owner's template runs on the API host
(validation) and on every worker (sending). So on top of it:

- a work budget per render (`work_budget`): every loop turn, call, filter and operator
  spends from it, by the size of what it handles, so no template runs for long;
- every operation that could build something huge (`*`, `**`, `+`, `~`, `%`, `|center`,
  `|indent`, `|wordwrap`, `|replace`, `|join`, `str.ljust` ...) is checked *before* it
  runs against `SIZE_LIMIT`, so no template allocates more than that at once;
- no globals but a bounded `range`, and no `str.format` (the `format` filter remains).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Characters (or items) one operation may produce: the rendered cap of a part.
SIZE_LIMIT = 256 * 1024
# Units of work one part may spend (a loop turn is 1, a call `CALL_COST`, a filter or method
# on a string of n characters n more): ample for an email, a fraction of a second of CPU.
WORK_LIMIT = 200_000
# A call (a macro above all) costs far more than a loop turn.
CALL_COST = 10
# Items `range()` (and `|slice`) may produce in a template (Jinja's own limit is 100 000).
RANGE_LIMIT = 1_000
# Bits an integer built by `*` or `**` may have: any amount fits, a CPU-eating number not.
INTEGER_LIMIT_BITS = 4_096

# A %-conversion or a {}-field with a width or precision of a million or more, or taken
# from an argument (`*`, a nested `{}`): it could pad a string to any size.
WIDE_FORMAT = re.compile(r"%[^a-zA-Z%]*?(?:\*|\d{7,})|\{[^{}]*:[^{}]*(?:\{|\d{7,})")

# The global every `for` loop iterates through (see `EmailSandbox._parse`).
LOOP_GUARD = "_casebook_loop_guard"


class _Budget:
    def __init__(self) -> None:
        self.left = WORK_LIMIT

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise SecurityError(f"does more than {WORK_LIMIT} steps of work")


_BUDGET: ContextVar[_Budget | None] = ContextVar("email_template_budget", default=None)


@contextmanager
def work_budget() -> Iterator[None]:
    """Everything rendered inside spends from one fresh budget."""
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _spend(units: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(units)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 1


def _check_size(size: int, what: str) -> None:
    if size > SIZE_LIMIT:
        raise SecurityError(f"{what} would be longer than {SIZE_LIMIT}")


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and WIDE_FORMAT.search(fmt):
        raise SecurityError("a format width or precision of a million or more, or from `*`")


def _check_integer(value: Any, bits: int) -> None:
    if isinstance(value, int) and bits > INTEGER_LIMIT_BITS:
        raise SecurityError(f"an integer larger than {INTEGER_LIMIT_BITS} bits")


def _bits(value: Any) -> int:
    return max(abs(value).bit_length(), 1) if isinstance(value, int) else 0


def _arg(rest: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return rest[index] if len(rest) > index else kwargs.get(name, default)


# String filters and methods whose result can be far larger than their input.
AMPLIFIERS = frozenset(
    {"center", "ljust", "rjust", "zfill", "indent", "expandtabs", "replace", "wordwrap", "format"}
)


def _check_amplifier(name: str, text: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a string operation whose result would pass `SIZE_LIMIT`, before it runs."""
    if name not in AMPLIFIERS:
        return
    text = text if isinstance(text, str) else str(text)  # string filters take any value
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(rest, kwargs, 0, "width", 0)
        _check_size(width if isinstance(width, int) else 0, name)
    elif name == "indent":
        width = _arg(rest, kwargs, 0, "width", 4)
        pad = width if isinstance(width, int) else len(str(width))
        _check_size(len(text) + (text.count("\n") + 1) * pad, name)
    elif name == "expandtabs":
        tabsize = _arg(rest, kwargs, 0, "tabsize", 8)
        _check_size(
            len(text) + text.count("\t") * (tabsize if isinstance(tabsize, int) else 0), name
        )
    elif name == "replace":
        old, new = _arg(rest, kwargs, 0, "old", ""), _arg(rest, kwargs, 1, "new", "")
        if isinstance(old, str) and isinstance(new, str):
            _check_size(len(text) + text.count(old) * max(0, len(new) - len(old)), name)
    elif name == "wordwrap":
        width = _arg(rest, kwargs, 0, "width", 79)
        wrap = _arg(rest, kwargs, 2, "wrapstring", None) or "\n"
        lines = len(text) // max(width if isinstance(width, int) else 1, 1) + 1
        _check_size(len(text) + lines * len(str(wrap)), name)
    elif name == "format":
        _check_format(text)


def _joined(items: Iterable[Any], separator: Any) -> list[Any]:
    """The items of a join, once it is known the joined string stays under the cap."""
    listed = list(items)
    _check_size(sum(len(str(x)) for x in listed) + len(str(separator)) * len(listed), "join")
    _spend(len(listed))
    return listed


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_environment/... get that first; wraps() keeps the mark.
    lead = 1 if getattr(function, "jinja_pass_arg", None) else 0

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, rest = args[lead], args[lead + 1 :]
        _spend(CALL_COST + _size(value))
        _check_amplifier(name, value, rest, kwargs)
        if name == "slice" and _arg(rest, kwargs, 0, "slices", 0) > RANGE_LIMIT:
            raise SecurityError(f"more than {RANGE_LIMIT} slices")
        if name == "join":
            args = (*args[:lead], _joined(value, _arg(rest, kwargs, 0, "d", "")), *rest)
        return function(*args, **kwargs)

    return guarded


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE_LIMIT:
        raise SecurityError(f"range longer than {RANGE_LIMIT} items")
    return numbers


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend(1)
        yield item


def _measured(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """`~` joins its parts outside the sandbox's hooks: measure them first."""
    size = sum(len(p) if isinstance(p, str) else len(str(p)) for p in parts)
    _check_size(size, "`~`")
    _spend(size)
    return parts


class _GuardedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.measured((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(")))")


class EmailSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the size checks and the work budget above."""

    code_generator_class = _GuardedCodeGenerator
    # Intercepted operators are never folded at compile time either (`'%09999999d' % 1`).
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: Any, loader: BaseLoader | None = None) -> None:
        super().__init__(
            undefined=StrictUndefined,  # a missing value fails loudly, never renders as ""
            autoescape=autoescape,
            keep_trailing_newline=True,
            loader=loader,
        )
        # Jinja's default globals (cycler, joiner, namespace, lipsum, dict) serve no email
        # and give a template state to grow or CPU to burn: only a bounded range remains.
        self.globals.clear()
        self.globals["range"] = _bounded_range
        self.globals[LOOP_GUARD] = _loop_guard
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.measured = _measured

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `for` loop iterates through the guard, which spends a unit per turn."""
        template = super()._parse(source, name, filename)
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.Name(LOOP_GUARD, "load"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return template

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend(1)
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    _check_size(len(sequence) * times, "repetition")
            _check_integer(left, _bits(left) + _bits(right))
        elif operator == "**" and isinstance(right, int) and right > 0:
            _check_integer(left, _bits(left) * right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            _check_size(_size(left) + _size(right), "`+`")
        elif operator == "%":
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        _spend(CALL_COST + (len(owner) if isinstance(owner, str) else 0))
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            _check_amplifier(name, owner, args, kwargs)
            if name == "join" and args:
                args = (_joined(args[0], owner), *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> None:
        # `str.format` pads and nests fields beyond any check here; `|format` is checked.
        if super().wrap_str_format(value) is not None:
            raise SecurityError("str.format is not available; use the format filter")
        return None
