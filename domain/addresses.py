"""What an email address a case sends to may look like: one plain address, nothing more.

Checked at intake (`POST /cases` refuses it, naming the field) and again at send time (an
address that reached a worker some other way is refused there, never put into a header).
A newline would add headers (`Bcc:`), a comma or a display name more recipients.
"""

from __future__ import annotations

import re
import unicodedata
from email.errors import HeaderParseError, MessageDefect
from email.headerregistry import Address

# RFC 5321: a path is at most 256 octets with its brackets, so an address at most 254.
MAX_ADDRESS_LENGTH = 254
# A host name of letters, digits and hyphens, with a dot and a top-level label of letters.
DOMAIN_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$", re.ASCII
)


class InvalidAddressError(ValueError):
    pass


def parse_address(value: object) -> str:
    """`value` as one plain address (`local@domain.tld`), or `InvalidAddressError` saying why."""
    if not isinstance(value, str):
        raise InvalidAddressError(f"must be one email address as text, not {type(value).__name__}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise InvalidAddressError("must not contain line breaks or other control characters")
    if not value:
        raise InvalidAddressError("must not be empty")
    if any(c.isspace() for c in value):
        raise InvalidAddressError("must be one email address without spaces")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidAddressError(f"is longer than {MAX_ADDRESS_LENGTH} characters")
    try:
        address = Address(addr_spec=value)
    except (ValueError, HeaderParseError, MessageDefect) as exc:
        raise InvalidAddressError(f"is not one email address: {exc}") from None
    if address.addr_spec != value or not DOMAIN_RE.fullmatch(address.domain):
        raise InvalidAddressError("is not one email address of the form name@domain.tld")
    return value
