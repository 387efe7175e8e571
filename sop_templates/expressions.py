"""Safe, deterministic condition expressions for SOP templates.

Templates carry conditions such as::

    case.amount > 1000 and case.reason_code in ["pricing", "tax"]
    task.data.credit_amount <= case.amount * 0.5

They are evaluated inside Temporal workflows, so evaluation must be replay-safe: the source
is parsed with ``ast.parse`` (which only builds a syntax tree, it never compiles code), a
strict whitelist of node types is translated into a small tree of immutable nodes, and that
tree is walked by hand. Nothing touches the clock, randomness, I/O or Python attributes.

Language
    * literals: integers, decimal numbers (always ``Decimal``, exactly as written: ``0.30`` is
      ``Decimal("0.30")``, never a float), strings, ``True``/``False``/``None``, and list or
      tuple displays of such literals (evaluated to a tuple);
    * names and dotted access ``case.data.credit_amount``; ``x["key"]`` with a string key is
      the same as ``x.key`` (for keys that are not identifiers). Each step reads a mapping
      key, never a Python attribute; segments starting with ``_`` are rejected;
    * comparisons ``== != < <= > >= in not in`` (chained), ``is None`` / ``is not None``;
    * ``and`` / ``or`` / ``not`` with Python truthiness and short-circuiting (``and``/``or``
      return an operand, as in Python);
    * arithmetic ``+ - * /`` and unary ``-``/``+`` on numbers only;
    * calls to ``len``, ``abs``, ``first``, ``lower`` and ``upper`` with exactly one argument.

    Everything else (other calls, ``**``, ``%``, ``//``, bit operators, conditional
    expressions, lambdas, comprehensions, f-strings, walrus, starred, slices, integer
    subscripts, dict/set displays, backslash escapes) is an ``ExpressionError``.

Values
    * A missing name or key is ``None``, and reading through ``None`` stays ``None``
      (``case.data.vip.level`` on a case without ``vip``). Reading a key of a non-mapping
      (a string, a list, ...) is an error.
    * Numbers are ``int`` or ``Decimal`` (``bool`` is never a number). A ``float`` from the
      context is converted with ``Decimal(str(value))``. ``int`` op ``int`` stays ``int``
      for ``+ - *``; any ``Decimal`` operand, and every ``/``, gives a ``Decimal``. Decimal
      arithmetic uses a fixed context (28 significant digits, half-even) so the result never
      depends on thread-local decimal settings.
    * Numeric strings: amounts arrive from JSON as strings such as ``"1250.00"``. A string
      that fully matches ``[+-]?digits[.digits]`` (no exponent, spaces, NaN or Infinity) is
      treated as a ``Decimal``
        - in arithmetic and unary minus (always),
        - in ``< <= > >=`` when the other side is a number or also a numeric string,
        - in ``==``/``!=`` only when the other side is a real number, so codes such as
          ``"001"`` and ``"1"`` stay different strings.
      Any other string in arithmetic, or compared with ``<`` to a number, is an error.
    * ``==``/``!=`` never raise: values of different kinds (number, string, boolean, list,
      object, None) are simply unequal; lists compare element by element with these rules.
    * ``< <= > >=``, ``in``, arithmetic, ``len`` and ``abs`` on ``None`` raise
      ``ExpressionError`` ("case.data.limit is missing"); ``lower``/``upper`` pass ``None``
      through so ``lower(case.data.region) == "emea"`` works when the field is absent.
    * ``in`` works on lists (element equality as above), strings (substring; the item must
      be a string) and objects (key membership).
"""

from __future__ import annotations

import ast
import decimal
import functools
import io
import operator
import re
import tokenize
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Expression", "ExpressionError", "check_names", "compile_expression", "evaluate"]

# Conditions are one-liners; the caps keep parsing and the recursive walk cheap and bounded.
MAX_SOURCE_LENGTH = 2000
MAX_DEPTH = 100

_DECIMAL_CONTEXT = decimal.Context(
    prec=28,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# ASCII digits only: Decimal() would also accept other scripts' digits, exponents and NaN.
_NUMERIC_STRING = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

Number = int | Decimal


class ExpressionError(ValueError):
    """An expression that cannot be compiled or evaluated.

    ``offset`` is the 0-based character position in ``expression`` when known.
    """

    def __init__(self, expression: str, message: str, offset: int | None = None) -> None:
        self.expression = expression
        self.message = message
        self.offset = offset
        super().__init__(f"invalid expression {expression!r}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Default exception pickling would replay only the formatted message as the sole arg.
        return (type(self), (self.expression, self.message, self.offset))


class _Fail(Exception):
    """Internal error raised below the public API; wrapped into ExpressionError with source."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --------------------------------------------------------------------------- value helpers


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _as_number(value: Any) -> Number | None:
    """The numeric reading of ``value`` (numbers and numeric strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str) and _NUMERIC_STRING.fullmatch(value):
        return Decimal(value)
    return None


def _values_equal(left: Any, right: Any) -> bool:
    if _is_number(left) or _is_number(right):
        left_number, right_number = _as_number(left), _as_number(right)
        return left_number is not None and right_number is not None and left_number == right_number
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        # Literal lists are tuples while context lists are lists; compare by content.
        return len(left) == len(right) and all(map(_values_equal, left, right))
    if _kind(left) != _kind(right):
        return False
    return bool(left == right)


# ------------------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class _Node:
    text: str
    offset: int

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def missing(self) -> _Fail:
        return _Fail(f"{self.text} is None", self.offset)

    def require(self, value: Any) -> Any:
        if value is None:
            raise self.missing()
        return value

    def number(self, value: Any) -> Number:
        number = _as_number(self.require(value))
        if number is None:
            raise _Fail(f"{self.text} is not a number (it is a {_kind(value)})", self.offset)
        return number


@dataclass(frozen=True)
class _Literal(_Node):
    value: Any

    def missing(self) -> _Fail:
        return _Fail("None cannot be used here", self.offset)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True)
class _Name(_Node):
    path: tuple[str, ...]

    def missing(self) -> _Fail:
        return _Fail(f"{self.text} is missing", self.offset)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        value: Any = context
        for depth, segment in enumerate(self.path):
            if value is None:
                return None
            if not isinstance(value, Mapping):
                owner = ".".join(self.path[:depth])
                raise _Fail(
                    f"cannot read '{segment}' of {owner}: it is a {_kind(value)}", self.offset
                )
            value = value.get(segment)
        return value


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return not self.operand.evaluate(context)


@dataclass(frozen=True)
class _Sign(_Node):
    negate: bool
    operand: _Node

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        number = self.operand.number(self.operand.evaluate(context))
        return -number if self.negate else +number


@dataclass(frozen=True)
class _BoolOp(_Node):
    is_and: bool
    operands: tuple[_Node, ...]

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        value: Any = None
        for operand in self.operands:
            value = operand.evaluate(context)
            # Short-circuit exactly like Python so guards such as `x != None and x > 1` work.
            if bool(value) != self.is_and:
                return value
        return value


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(frozen=True)
class _Arithmetic(_Node):
    op: str
    left: _Node
    right: _Node

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        left = self.left.number(self.left.evaluate(context))
        right = self.right.number(self.right.evaluate(context))
        if self.op != "/":
            return _ARITHMETIC[self.op](left, right)
        if right == 0:
            raise _Fail("division by zero", self.offset)
        return Decimal(left) / right


def _contains(container_node: _Node, container: Any, item: Any) -> bool:
    container = container_node.require(container)
    if isinstance(container, list | tuple):
        return any(_values_equal(item, element) for element in container)
    if isinstance(container, str):
        if not isinstance(item, str):
            raise _Fail(f"'in' {container_node.text} needs a string on the left, got {_kind(item)}")
        return item in container
    if isinstance(container, Mapping):
        # Keys of JSON objects are strings; this also keeps unhashable items out of `in`.
        return isinstance(item, str) and item in container
    raise _Fail(f"'in' needs a list, string or object, {container_node.text} is {_kind(container)}")


def _orderable(left: Any, right: Any) -> tuple[Any, Any]:
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return left_number, right_number
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    raise _Fail(f"cannot compare {_kind(left)} with {_kind(right)}")


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(op: str, left_node: _Node, left: Any, right_node: _Node, right: Any) -> bool:
    if op in ("==", "!="):
        return _values_equal(left, right) == (op == "==")
    if op in ("is", "is not"):
        return (left is None) == (op == "is")
    if op in ("in", "not in"):
        return _contains(right_node, right, left) == (op == "in")
    ordered = _orderable(left_node.require(left), right_node.require(right))
    return _ORDERING[op](*ordered)


@dataclass(frozen=True)
class _Compare(_Node):
    left: _Node
    ops: tuple[str, ...]
    comparators: tuple[_Node, ...]

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        left_node, left = self.left, self.left.evaluate(context)
        for op, right_node in zip(self.ops, self.comparators, strict=True):
            right = right_node.evaluate(context)
            try:
                holds = _compare(op, left_node, left, right_node, right)
            except _Fail as failure:
                offset = self.offset if failure.offset is None else failure.offset
                raise _Fail(failure.message, offset) from None
            # Chained comparisons stop at the first false link, as in Python.
            if not holds:
                return False
            left_node, left = right_node, right
        return True


def _len(node: _Node, value: Any) -> int:
    value = node.require(value)
    if not isinstance(value, str | list | tuple | Mapping):
        raise _Fail(f"len() needs a string, list or object, {node.text} is {_kind(value)}")
    return len(value)


def _abs(node: _Node, value: Any) -> Number:
    return abs(node.number(value))


def _string_function(method: Callable[[str], str]) -> Callable[[_Node, Any], str | None]:
    def apply(node: _Node, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _Fail(f"{node.text} is not a string (it is a {_kind(value)})", node.offset)
        return method(value)

    return apply


def _first(node: _Node, value: Any) -> Any:
    """The first element of a list (None for an empty one): `first(case.invoice_ids)`."""
    value = node.require(value)
    if not isinstance(value, list | tuple):
        raise _Fail(f"first() needs a list, {node.text} is {_kind(value)}")
    return value[0] if value else None


_FUNCTIONS: dict[str, Callable[[_Node, Any], Any]] = {
    "len": _len,
    "first": _first,
    "abs": _abs,
    "lower": _string_function(str.lower),
    "upper": _string_function(str.upper),
}


@dataclass(frozen=True)
class _Call(_Node):
    function: Callable[[_Node, Any], Any]
    argument: _Node

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            return self.function(self.argument, self.argument.evaluate(context))
        except _Fail as failure:
            offset = self.offset if failure.offset is None else failure.offset
            raise _Fail(failure.message, offset) from None


# ------------------------------------------------------------------------------ compiler

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.Mod: "%",
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}

_CONSTRUCT_NAMES: dict[type[ast.AST], str] = {
    ast.Call: "function calls",
    ast.Lambda: "lambda",
    ast.IfExp: "conditional expressions ('a if b else c')",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.NamedExpr: "assignment expressions (':=')",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.Starred: "starred expressions",
    ast.Dict: "dict displays",
    ast.Set: "set displays",
    ast.Slice: "slices",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _line_starts(text: str) -> list[int]:
    # Python's tokenizer breaks lines on \n, \r\n and \r only (not on str.splitlines()'s extras).
    return [0] + [match.end() for match in re.finditer(r"\r\n|\r|\n", text)]


def _char_offset(text: str, lineno: int | None, column: int | None, *, in_bytes: bool) -> int:
    """Convert a (1-based line, column) position into a 0-based index into ``text``."""
    starts = _line_starts(text)
    line_index = min(max((lineno or 1) - 1, 0), len(starts) - 1)
    start = starts[line_index]
    column = max(column or 0, 0)
    if in_bytes:
        # ast reports columns as UTF-8 byte offsets.
        column = len(text[start:].encode()[:column].decode(errors="ignore"))
    return min(start + column, len(text))


class _Compiler:
    """Translates a whitelisted ``ast`` tree into ``_Node``s, collecting the names read."""

    def __init__(self, text: str, base_offset: int) -> None:
        self.text = text
        self.base_offset = base_offset
        self.names: set[str] = set()

    def offset_of(self, node: ast.AST) -> int:
        column = _char_offset(
            self.text, getattr(node, "lineno", 1), getattr(node, "col_offset", 0), in_bytes=True
        )
        return self.base_offset + column

    def fail(self, node: ast.AST, message: str) -> _Fail:
        return _Fail(message, self.offset_of(node))

    def where(self, node: ast.expr) -> dict[str, Any]:
        text = ast.get_source_segment(self.text, node) or ""
        return {"text": " ".join(text.split()), "offset": self.offset_of(node)}

    def build(self, node: ast.expr, depth: int = 0) -> _Node:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        depth += 1
        match node:
            case ast.Constant():
                return _Literal(value=self.constant(node), **self.where(node))
            case ast.List() | ast.Tuple():
                return _Literal(value=self.literal_list(node), **self.where(node))
            case ast.Name() | ast.Attribute() | ast.Subscript():
                return self.name(node)
            case ast.BoolOp():
                return self.bool_op(node, depth)
            case ast.UnaryOp():
                return self.unary(node, depth)
            case ast.BinOp():
                return self.arithmetic(node, depth)
            case ast.Compare():
                return self.compare(node, depth)
            case ast.Call():
                return self.call(node, depth)
        construct = _CONSTRUCT_NAMES.get(type(node), type(node).__name__)
        raise self.fail(node, f"{construct} are not allowed")

    def constant(self, node: ast.Constant) -> Any:
        value = node.value
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            # Re-read the literal's own digits: the float value has already lost "0.30".
            digits = ast.get_source_segment(self.text, node) or repr(value)
            try:
                return Decimal(digits)
            except decimal.InvalidOperation:
                raise self.fail(node, f"invalid number {digits!r}") from None
        raise self.fail(node, f"{type(value).__name__} literals are not allowed")

    def literal_list(self, node: ast.List | ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.list_element(element) for element in node.elts)

    def list_element(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        # Signed numbers such as [-1, 2.5] are literals too.
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and _is_number(node.operand.value)
        ):
            number = self.constant(node.operand)
            return -number if isinstance(node.op, ast.USub) else number
        raise self.fail(node, "list elements must be literals")

    def segment(self, node: ast.AST, segment: str) -> str:
        if not segment or segment.startswith("_") or "." in segment:
            raise self.fail(node, f"field name {segment!r} is not allowed")
        return segment

    def path(self, node: ast.expr) -> tuple[str, ...]:
        # Walk iteratively so long dotted chains cannot exhaust the stack.
        reversed_path: list[str] = []
        while True:
            match node:
                case ast.Name(id=root):
                    reversed_path.append(self.segment(node, root))
                    return tuple(reversed(reversed_path))
                case ast.Attribute(value=inner, attr=attr):
                    reversed_path.append(self.segment(node, attr))
                case ast.Subscript(value=inner, slice=ast.Constant(value=str() as key)):
                    reversed_path.append(self.segment(node, key))
                case ast.Subscript():
                    raise self.fail(node, 'subscripts must be string keys, like x["key"]')
                case _:
                    raise self.fail(node, "fields can only be read from names, like case.amount")
            node = inner

    def name(self, node: ast.expr) -> _Name:
        path = self.path(node)
        dotted = ".".join(path)
        self.names.add(dotted)
        return _Name(text=dotted, offset=self.offset_of(node), path=path)

    def bool_op(self, node: ast.BoolOp, depth: int) -> _BoolOp:
        operands = tuple(self.build(value, depth) for value in node.values)
        is_and = isinstance(node.op, ast.And)
        return _BoolOp(is_and=is_and, operands=operands, **self.where(node))

    def unary(self, node: ast.UnaryOp, depth: int) -> _Node:
        if isinstance(node.op, ast.Invert):
            raise self.fail(node, "operator '~' is not allowed")
        operand = self.build(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return _Not(operand=operand, **self.where(node))
        return _Sign(negate=isinstance(node.op, ast.USub), operand=operand, **self.where(node))

    def arithmetic(self, node: ast.BinOp, depth: int) -> _Arithmetic:
        symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
        if symbol not in ("+", "-", "*", "/"):
            raise self.fail(node, f"operator '{symbol}' is not allowed")
        left, right = self.build(node.left, depth), self.build(node.right, depth)
        return _Arithmetic(op=symbol, left=left, right=right, **self.where(node))

    def compare(self, node: ast.Compare, depth: int) -> _Compare:
        ops = tuple(_OPERATOR_SYMBOLS[type(op)] for op in node.ops)
        for op, comparator in zip(ops, node.comparators, strict=True):
            is_none = isinstance(comparator, ast.Constant) and comparator.value is None
            if op in ("is", "is not") and not is_none:
                raise self.fail(comparator, f"'{op}' is only allowed as '{op} None'")
        left = self.build(node.left, depth)
        comparators = tuple(self.build(comparator, depth) for comparator in node.comparators)
        return _Compare(left=left, ops=ops, comparators=comparators, **self.where(node))

    def call(self, node: ast.Call, depth: int) -> _Call:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise self.fail(node, f"only these functions can be called: {allowed}")
        if node.keywords or len(node.args) != 1:
            raise self.fail(node, f"{node.func.id}() takes exactly one positional argument")
        argument = self.build(node.args[0], depth)
        return _Call(function=_FUNCTIONS[node.func.id], argument=argument, **self.where(node))


# ------------------------------------------------------------------------------ parsing


def _is_glued_number(previous: tokenize.TokenInfo | None, token: tokenize.TokenInfo) -> bool:
    return (
        previous is not None
        and previous.type == tokenize.NUMBER
        and token.type == tokenize.NAME
        and previous.end == token.start
    )


def _reject_glued_number(text: str) -> None:
    """Reject ``1if``-style input, which CPython only *warns* about.

    Whether such a warning becomes an error depends on process-wide warning filters, so it
    is refused up front to make acceptance identical on every worker.
    """
    try:
        previous: tokenize.TokenInfo | None = None
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if _is_glued_number(previous, token):
                line, column = token.start
                offset = _char_offset(text, line, column, in_bytes=False)
                raise _Fail("a number must be separated from the next word", offset)
            previous = token
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse reports these with better messages.


def _syntax_failure(error: SyntaxError, text: str, base_offset: int) -> _Fail:
    offset = _char_offset(text, error.lineno, (error.offset or 1) - 1, in_bytes=False)
    # CPython reports a premature end as "invalid syntax" at column 0 or past the end.
    at_end = not error.offset or offset >= len(text)
    if error.msg == "invalid syntax" and at_end:
        return _Fail("unexpected end of input", base_offset + len(text))
    return _Fail(error.msg or "invalid syntax", base_offset + offset)


def _parse(text: str, base_offset: int) -> ast.expr:
    if "\\" in text:
        # Escapes are never needed in conditions, and invalid ones only produce warnings.
        raise _Fail("backslashes are not allowed", base_offset + text.index("\\"))
    _reject_glued_number(text)
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError as error:
        raise _syntax_failure(error, text, base_offset) from None
    except (ValueError, MemoryError, RecursionError):
        raise _Fail("expression is too complex or contains invalid characters") from None


def _build(source: str) -> Expression:
    if len(source) > MAX_SOURCE_LENGTH:
        raise _Fail(f"expression is longer than {MAX_SOURCE_LENGTH} characters")
    if "\x00" in source:
        raise _Fail("NUL characters are not allowed", source.index("\x00"))
    text = source.strip()
    if not text:
        raise _Fail("empty expression", 0)
    # Parse without surrounding whitespace (leading blanks are an IndentationError for
    # ast.parse) but report offsets into the original source.
    base_offset = len(source) - len(source.lstrip())
    compiler = _Compiler(text, base_offset)
    root = compiler.build(_parse(text, base_offset))
    return Expression(source=source, names=frozenset(compiler.names), _root=root)


# ------------------------------------------------------------------------------ public API


@dataclass(frozen=True)
class Expression:
    """A compiled, immutable condition; obtain one with :func:`compile_expression`."""

    source: str
    names: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate against ``context`` (e.g. ``{"case": {...}, "task": {...}}``)."""
        try:
            with decimal.localcontext(_DECIMAL_CONTEXT):
                return self._root.evaluate(context)
        except _Fail as failure:
            raise ExpressionError(self.source, failure.message, failure.offset) from None
        except ArithmeticError as error:
            message = f"arithmetic error ({type(error).__name__})"
            raise ExpressionError(self.source, message) from None


@functools.lru_cache(maxsize=1024)
def compile_expression(source: str) -> Expression:
    """Parse and validate ``source``; raises :class:`ExpressionError`. Results are cached."""
    if not isinstance(source, str):
        # YAML turns `when: true` into a bool; give template authors a clear message.
        raise ExpressionError(repr(source), f"expected a string, got {type(source).__name__}")
    try:
        return _build(source)
    except _Fail as failure:
        raise ExpressionError(source, failure.message, failure.offset) from None


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Compile (cached) and evaluate ``source`` against ``context``."""
    return compile_expression(source).evaluate(context)


def check_names(
    expression: Expression | str, allowed_roots: Mapping[str, AbstractSet[str] | None]
) -> list[str]:
    """Report names whose root, or whose first field under a known root, is unknown.

    A root mapped to ``None`` accepts any field; levels below the first field (e.g. anything
    under ``case.data``) are free-form and never checked.
    """
    if isinstance(expression, str):
        expression = compile_expression(expression)
    errors: list[str] = []
    for name in sorted(expression.names):
        root, _, rest = name.partition(".")
        if root not in allowed_roots:
            known = ", ".join(sorted(allowed_roots)) or "(none)"
            errors.append(f"unknown name '{name}': '{root}' is not one of {known}")
            continue
        fields = allowed_roots[root]
        first_field = rest.split(".", 1)[0]
        if fields is not None and first_field and first_field not in fields:
            known = ", ".join(sorted(fields))
            errors.append(f"unknown field '{name}': {root} has no field '{first_field}' ({known})")
    return errors
