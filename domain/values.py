"""What a customer, invoice or case id, an amount and a currency may look like.

One definition for the API's request schemas, the billing adapter and service, and the
SOP interpreter: an id that passes here is safe in a URL path segment, a log line and a
Temporal workflow id.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from typing import Literal, get_args

import pycountry

# The case types Casebook opens (`POST /cases`, the sweeps), each with the prefix of its ids.
CaseType = Literal["dispute", "collection", "credit_review"]
CASE_TYPES: tuple[CaseType, ...] = get_args(CaseType)
CASE_ID_PREFIX: dict[CaseType, str] = {
    "dispute": "DSP",
    "collection": "COL",
    "credit_review": "CRR",
}

# Letters, digits and `._-`, starting with a letter or digit: no `/`, `?`, `%`, spaces or
# control characters, so an id can never change the meaning of a URL it is put into.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ID_RE = re.compile(ID_PATTERN, re.ASCII)

# A positive decimal with ASCII digits only (`\d` would admit other scripts' digits).
# Instants outside these years are typos or attacks; at the edges of `datetime` they also
# overflow when converted to UTC or moved by an SLA (API instants, report periods).
FIRST_YEAR, LAST_YEAR = 2000, 2199
AMOUNT_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,4})?$"
AMOUNT_RE = re.compile(AMOUNT_PATTERN, re.ASCII)


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def is_amount_text(value: object) -> bool:
    return isinstance(value, str) and AMOUNT_RE.fullmatch(value) is not None


def parse_amount(text: str) -> Decimal:
    """An amount from its decimal text; ValueError naming what is wrong."""
    if not is_amount_text(text):
        raise ValueError(f"{text!r} is not a positive decimal with at most 4 decimal places")
    amount = Decimal(text)
    if amount <= 0:
        raise ValueError("must be greater than zero")
    return amount


@cache
def currencies() -> frozenset[str]:
    """ISO 4217 alphabetic codes (from pycountry's copy of the standard)."""
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def is_currency(value: object) -> bool:
    return isinstance(value, str) and value in currencies()
