"""Tests for the SOP condition expression language."""

from __future__ import annotations

import contextlib
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sop_templates.expressions import (
    Expression,
    ExpressionError,
    check_names,
    compile_expression,
    evaluate,
)

CASE_FIELDS = {
    "amount",
    "currency",
    "region",
    "reason_code",
    "customer_id",
    "invoice_ids",
    "type",
    "data",
}


def make_context(**case_overrides: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "amount": "1250.00",
        "currency": "EUR",
        "region": "EMEA",
        "reason_code": "pricing",
        "customer_id": "C-1",
        "invoice_ids": ["INV-1", "INV-2"],
        "type": "dispute",
        "data": {"vip": True, "tags": ["urgent"], "limit": None, "line-items": 3},
    }
    case.update(case_overrides)
    task = {"outcome": "valid", "data": {"credit_amount": "600.00"}}
    return {"case": case, "task": task}


# ----------------------------------------------------------------------- spec examples


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('case.amount > 1000 and case.reason_code in ["pricing", "tax"]', True),
        ('task.outcome == "valid"', True),
        ("task.data.credit_amount <= case.amount * 0.5", True),
        ("not case.data.vip", False),
        ('case.currency != "USD" or case.amount >= 250.00', True),
    ],
)
def test_spec_examples(source: str, expected: bool) -> None:
    assert evaluate(source, make_context()) is expected


def test_spec_examples_other_branch() -> None:
    context = make_context(amount=Decimal("999.99"), reason_code="tax", currency="USD")
    context["task"]["data"]["credit_amount"] = "500.00"
    source = 'case.amount > 1000 and case.reason_code in ["pricing", "tax"]'
    assert evaluate(source, context) is False
    assert evaluate("task.data.credit_amount <= case.amount * 0.5", context) is False
    assert evaluate('case.currency != "USD" or case.amount >= 250.00', context) is True
    assert evaluate('case.currency != "USD" or case.amount >= 1000', context) is False


# ---------------------------------------------------------------------- decimal exactness


@pytest.mark.parametrize("amount", ["0.30", Decimal("0.3"), Decimal("0.30"), 0.3])
def test_amount_equality_is_exact(amount: Any) -> None:
    assert evaluate("case.amount == 0.30", make_context(amount=amount)) is True
    assert evaluate("case.amount != 0.3", make_context(amount=amount)) is False


def test_decimal_arithmetic_is_exact() -> None:
    assert evaluate("0.1 + 0.2 == 0.3", {}) is True
    assert evaluate("0.1 + 0.2", {}) == Decimal("0.3")
    assert isinstance(evaluate("0.1 + 0.2", {}), Decimal)


def test_float_literals_become_decimals_as_written() -> None:
    assert evaluate("250.00", {}) == Decimal("250.00")
    assert str(evaluate("250.00", {})) == "250.00"
    assert evaluate("1e3", {}) == Decimal(1000)
    assert evaluate("1_000.5", {}) == Decimal("1000.5")


def test_int_arithmetic_stays_int_and_division_is_decimal() -> None:
    assert evaluate("2 + 3 * 4", {}) == 14
    assert type(evaluate("2 + 3 * 4", {})) is int
    assert evaluate("7 / 2", {}) == Decimal("3.5")
    assert isinstance(evaluate("4 / 2", {}), Decimal)


def test_mixed_int_decimal_float_arithmetic() -> None:
    context = {"x": {"i": 3, "d": Decimal("1.5"), "f": 0.1, "s": "2.25"}}
    assert evaluate("x.i * x.d", context) == Decimal("4.5")
    assert evaluate("x.f + 0.2", context) == Decimal("0.3")
    assert evaluate("x.s * 2", context) == Decimal("4.50")
    assert evaluate("-x.s", context) == Decimal("-2.25")
    assert evaluate("x.i > x.d", context) is True


def test_unary_operators() -> None:
    assert evaluate("-5 + 2", {}) == -3
    assert evaluate("+1.5", {}) == Decimal("1.5")
    assert evaluate("-case.amount < 0", make_context()) is True


# --------------------------------------------------------------------- numeric strings


def test_numeric_strings_compare_numerically_with_numbers() -> None:
    context = make_context(amount="300.00")
    assert evaluate("case.amount > 1000", context) is False
    assert evaluate("case.amount == 300", context) is True


def test_two_numeric_strings_order_numerically() -> None:
    # Lexicographically "1250.00" < "600.00"; amounts must not compare like that.
    assert evaluate("task.data.credit_amount < case.amount", make_context()) is True


def test_two_strings_are_compared_as_strings_for_equality() -> None:
    context = {"a": "001", "b": "1"}
    assert evaluate("a == b", context) is False
    assert evaluate("a == 1", context) is True


def test_non_numeric_strings_order_lexicographically() -> None:
    assert evaluate('case.region < "F"', make_context()) is True


@pytest.mark.parametrize("text", ["1e3", "NaN", "Infinity", " 12", "1,000.00", "١٢", "12."])
def test_only_plain_decimal_strings_are_numeric(text: str) -> None:
    if text == "12.":
        assert evaluate("x == 12", {"x": text}) is True
        return
    assert evaluate("x == 1000 or x == 12", {"x": text}) is False
    with pytest.raises(ExpressionError, match="not a number"):
        evaluate("x + 1", {"x": text})


def test_numeric_string_against_non_numeric_ordering_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="cannot compare string with number"):
        evaluate("case.region > 5", make_context())


def test_booleans_are_not_numbers() -> None:
    assert evaluate("case.data.vip == 1", make_context()) is False
    assert evaluate("case.data.vip == True", make_context()) is True
    with pytest.raises(ExpressionError, match="not a number"):
        evaluate("case.data.vip + 1", make_context())
    with pytest.raises(ExpressionError, match="cannot compare"):
        evaluate("case.data.vip > 0", make_context())


# ------------------------------------------------------------------------ missing values


def test_missing_names_are_none() -> None:
    context = make_context()
    assert evaluate("case.data.missing", context) is None
    assert evaluate("case.data.missing.deeper.still", context) is None
    assert evaluate("unknown_root.x", context) is None
    assert evaluate("not case.data.missing", context) is True
    assert evaluate("case.data.missing == None", context) is True
    assert evaluate("case.data.missing != 5", context) is True
    assert evaluate("case.data.missing is None", context) is True
    assert evaluate("case.amount is not None", context) is True


def test_ordering_against_missing_value_names_the_field() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("case.amount > case.data.limit", make_context())
    assert caught.value.message == "case.data.limit is missing"
    assert caught.value.offset == len("case.amount > ")


@pytest.mark.parametrize(
    "source",
    [
        "case.data.missing + 1",
        "-case.data.missing",
        "len(case.data.missing) > 0",
        "abs(case.data.missing)",
        '"x" in case.data.missing',
    ],
)
def test_missing_values_in_strict_operations_raise(source: str) -> None:
    with pytest.raises(ExpressionError, match=r"case\.data\.missing is missing"):
        evaluate(source, make_context())


def test_guard_short_circuits_before_missing_comparison() -> None:
    source = "case.data.limit != None and case.amount > case.data.limit"
    assert evaluate(source, make_context()) is False
    context = make_context()
    context["case"]["data"]["limit"] = "1000"
    assert evaluate(source, context) is True


def test_reading_a_field_of_a_non_object_is_an_error() -> None:
    with pytest.raises(ExpressionError, match=r"cannot read 'x' of case\.currency: it is a string"):
        evaluate("case.currency.x", make_context())


# ------------------------------------------------------------------- operators and calls


def test_boolean_operators_follow_python_semantics() -> None:
    assert evaluate("case.data.missing or 1000", make_context()) == 1000
    assert evaluate("0 and case.data.missing.x > 1", make_context()) == 0
    assert evaluate("True and False or True", {}) is True


def test_chained_comparisons() -> None:
    assert evaluate("1000 < case.amount <= 1250", make_context()) is True
    assert evaluate("1000 < case.amount < 1250", make_context()) is False
    # The false first link short-circuits the erroring second one.
    assert evaluate("2 < 1 < case.data.missing", {}) is False


def test_membership() -> None:
    context = make_context()
    assert evaluate('"INV-2" in case.invoice_ids', context) is True
    assert evaluate('"INV-3" not in case.invoice_ids', context) is True
    assert evaluate('"MEA" in case.region', context) is True
    assert evaluate('"vip" in case.data', context) is True
    assert evaluate("case.amount in [1250, 99]", context) is True
    assert evaluate("-1 in [-1, 2.5]", context) is True
    assert evaluate('case.invoice_ids == ["INV-1", "INV-2"]', context) is True
    with pytest.raises(ExpressionError, match="needs a string on the left"):
        evaluate("1 in case.region", context)
    with pytest.raises(ExpressionError, match="'in' needs a list"):
        evaluate("1 in case.amount * 1", context)


def test_string_keys_in_subscripts() -> None:
    expression = compile_expression('case.data["line-items"] > 2')
    assert expression.evaluate(make_context()) is True
    assert expression.names == frozenset({"case.data.line-items"})


def test_whitelisted_functions() -> None:
    context = make_context()
    assert evaluate("len(case.invoice_ids) == 2", context) is True
    assert evaluate("abs(-case.amount) == 1250", context) is True
    assert evaluate('lower(case.region) == "emea"', context) is True
    assert evaluate("upper(case.data.missing) == None", context) is True
    with pytest.raises(ExpressionError, match="not a string"):
        evaluate("lower(case.amount * 1)", context)


def test_division_by_zero_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate("case.amount / 0", make_context())


def test_decimal_overflow_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="arithmetic error"):
        evaluate("1e999999 * 1e999999", {})


# ------------------------------------------------------------------ rejected constructs


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os')", "only these functions can be called"),
        ("open('f')", "only these functions can be called"),
        ("case.amount.lower()", "only these functions can be called"),
        ("len(x, y)", "exactly one positional argument"),
        ("len(x=1)", "exactly one positional argument"),
        ("len(*x)", "starred expressions are not allowed"),
        ("case.__class__", "field name '__class__' is not allowed"),
        ("case._private", "field name '_private' is not allowed"),
        ("_root.x", "field name '_root' is not allowed"),
        ('case["__class__"]', "field name '__class__' is not allowed"),
        ('case["a.b"]', "is not allowed"),
        ("[x for x in y]", "comprehensions are not allowed"),
        ("{x for x in y}", "comprehensions are not allowed"),
        ("(x for x in y)", "generator expressions are not allowed"),
        ("lambda: 1", "lambda are not allowed"),
        ("a if b else c", "conditional expressions"),
        ("(x := 1)", "assignment expressions"),
        ("f'{case.amount}'", "f-strings are not allowed"),
        ("[*x]", "list elements must be literals"),
        ("[case.amount]", "list elements must be literals"),
        ("[[1]]", "list elements must be literals"),
        ("{'a': 1}", "dict displays are not allowed"),
        ("{1, 2}", "set displays are not allowed"),
        ("x[1]", "subscripts must be string keys"),
        ("x[1:2]", "subscripts must be string keys"),
        ("x[y]", "subscripts must be string keys"),
        ("'abc'.upper", "fields can only be read from names"),
        ("(a + b).c", "fields can only be read from names"),
        ("1 ** 1000000", "operator '**' is not allowed"),
        ("7 % 2", "operator '%' is not allowed"),
        ("7 // 2", "operator '//' is not allowed"),
        ("1 << 100000", "operator '<<' is not allowed"),
        ("a & b", "operator '&' is not allowed"),
        ("~1", "operator '~' is not allowed"),
        ("a is b", "'is' is only allowed as 'is None'"),
        ("a is not 1", "'is not' is only allowed as 'is not None'"),
        ("b'x'", "bytes literals are not allowed"),
        ("1j", "complex literals are not allowed"),
        ("...", "ellipsis literals are not allowed"),
        ("await x", "await are not allowed"),
        ("'\\x41'", "backslashes are not allowed"),
        ("1if x else 2", "a number must be separated"),
        ("x\x00", "NUL characters are not allowed"),
        ("x" * 2001, "longer than 2000 characters"),
        ("+".join(["a"] * 150), "nested too deeply"),
        ("-" * 500 + "1", "nested too deeply"),
    ],
)
def test_disallowed_constructs_are_rejected(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert message in caught.value.message
    assert caught.value.expression == source


@pytest.mark.parametrize("source", ["import os", "x = 1", "del x", "def f(): pass", "x; y"])
def test_statements_are_syntax_errors(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_arithmetic_on_strings_is_rejected_at_runtime() -> None:
    with pytest.raises(ExpressionError, match="not a number"):
        evaluate('"ab" * 100000000', {})
    with pytest.raises(ExpressionError, match="not a number"):
        evaluate("case.invoice_ids + case.invoice_ids", make_context())


# ------------------------------------------------------------------------ syntax errors


def test_syntax_error_at_end_of_input() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("case.amount >")
    error = caught.value
    assert str(error) == "invalid expression 'case.amount >': unexpected end of input"
    assert error.message == "unexpected end of input"
    assert error.expression == "case.amount >"
    assert error.offset == len("case.amount >")
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("a b", "invalid syntax", 2),
        ("(a", "'(' was never closed", 0),
        ("a )", "unmatched ')'", 2),
        ("'abc", "unterminated string literal", 0),
        ("", "empty expression", 0),
        ("   ", "empty expression", 0),
    ],
)
def test_syntax_errors_carry_message_and_offset(source: str, message: str, offset: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert message in caught.value.message
    assert caught.value.offset == offset


def test_non_string_source_is_rejected() -> None:
    with pytest.raises(ExpressionError, match="expected a string, got bool"):
        compile_expression(True)  # type: ignore[arg-type]


def test_surrounding_whitespace_and_newlines_in_parentheses_are_fine() -> None:
    assert evaluate("  case.amount > 1  ", make_context()) is True
    assert evaluate("(case.amount > 1\n and case.data.vip)", make_context()) is True
    with pytest.raises(ExpressionError) as caught:
        compile_expression("  case.amount > )")
    assert caught.value.offset == len("  case.amount > ")


def test_evaluation_errors_carry_the_source() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("case.amount + case.region", make_context())
    assert caught.value.expression == "case.amount + case.region"
    assert caught.value.message == "case.region is not a number (it is a string)"
    assert caught.value.offset == len("case.amount + ")


def test_expression_error_pickles() -> None:
    error = ExpressionError("a >", "unexpected end of input", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.expression, copy.message, copy.offset) == ("a >", "unexpected end of input", 3)
    assert str(copy) == str(error)


# ------------------------------------------------------------------------ names, caching


def test_names_lists_every_dotted_name_read() -> None:
    expression = compile_expression(
        'case.amount > 1000 and case.reason_code in ["pricing", "tax"]'
        " or len(task.data.items) > abs(case.data.credit_amount) or flag"
    )
    assert expression.names == frozenset(
        {"case.amount", "case.reason_code", "task.data.items", "case.data.credit_amount", "flag"}
    )
    assert compile_expression("1 + 2").names == frozenset()


def test_compiled_expressions_are_cached_and_immutable() -> None:
    first = compile_expression("case.amount > 1")
    assert compile_expression("case.amount > 1") is first
    assert isinstance(first, Expression)
    with pytest.raises(AttributeError):
        first.source = "x"  # type: ignore[misc]
    assert first == compile_expression("case.amount > 1")
    assert hash(first) == hash(compile_expression("case.amount > 1"))


def test_evaluation_is_repeatable() -> None:
    expression = compile_expression("task.data.credit_amount / 3 + case.amount")
    context = make_context()
    assert expression.evaluate(context) == expression.evaluate(context)
    assert expression.evaluate(context) == Decimal("1450.000000000000000000000000")


# --------------------------------------------------------------------------- check_names


ROOTS: dict[str, set[str] | None] = {"case": CASE_FIELDS, "task": None}


def test_check_names_accepts_known_names() -> None:
    source = "case.amount > 1 and case.data.anything.below == 2 and task.whatever and case"
    assert check_names(compile_expression(source), ROOTS) == []


def test_check_names_reports_unknown_roots_and_fields() -> None:
    errors = check_names("cse.amount > 1 and case.amout > 2 and case.data.x", ROOTS)
    assert len(errors) == 2
    assert "case.amout" in errors[0]
    assert "'amout'" in errors[0]
    assert "cse.amount" in errors[1]
    assert "'cse'" in errors[1]


def test_check_names_raises_for_invalid_source() -> None:
    with pytest.raises(ExpressionError):
        check_names("case.amount >", ROOTS)


# ------------------------------------------------------------------------------ property

TOKENS = [
    "case",
    "task",
    ".",
    "amount",
    "data",
    "x",
    "_y",
    "__class__",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'s'",
    '"1.5"',
    "0",
    "1",
    "0.30",
    "1e3",
    "1j",
    "None",
    "True",
    "False",
    "+",
    "-",
    "*",
    "/",
    "**",
    "%",
    "//",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not",
    "and",
    "or",
    "is",
    "if",
    "else",
    "lambda",
    ":",
    ":=",
    "for",
    "len",
    "abs",
    "lower",
    "upper",
    "open",
    "{",
    "}",
    "\\",
    "'",
    '"',
    "f'",
    "@",
]

SAMPLE_CONTEXT = {
    "case": {"amount": "12.50", "x": [1, "a", None], "data": {"x": {"y": 1}, "amount": 0.5}},
    "task": {"x": "abc", "data": Decimal("-3"), "amount": True},
    "x": None,
}

sources = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=14).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(sources)
def test_arbitrary_text_only_raises_expression_error(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    # Whatever compiles must also evaluate to a value or fail with ExpressionError only.
    with contextlib.suppress(ExpressionError):
        expression.evaluate(SAMPLE_CONTEXT)


grammar_leaves = st.sampled_from(
    [
        "case.amount",
        "case.x",
        "case.data.x",
        'case.data["amount"]',
        "task.x",
        "task.data",
        "nope.a",
        "0",
        "-2",
        "0.30",
        "1e3",
        "'s'",
        "'12.5'",
        "None",
        "True",
        "[1, 'a', None]",
        "1e999999",
    ]
)
grammar_expressions = st.recursive(
    grammar_leaves,
    lambda children: st.one_of(
        st.tuples(
            children,
            st.sampled_from(["+", "-", "*", "/", "==", "<", ">=", "in", "not in", "and", "or"]),
            children,
        ).map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})"),
        children.map(lambda child: f"(not {child})"),
        children.map(lambda child: f"(-{child})"),
        st.tuples(st.sampled_from(["len", "abs", "lower"]), children).map(
            lambda parts: f"{parts[0]}({parts[1]})"
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(grammar_expressions)
def test_well_formed_expressions_compile_and_fail_only_with_expression_error(source: str) -> None:
    expression = compile_expression(source)
    with contextlib.suppress(ExpressionError):
        expression.evaluate(SAMPLE_CONTEXT)
