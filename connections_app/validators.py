"""What a name people give (a connection, an OAuth 2.0 client, a service key) may hold.

Names reach e-mail subjects, log lines, page titles and the audit trail. A line break in one
could forge a header or a log line, and a bidirectional override (U+202E) makes a name read
differently from what it is, so all of these are refused with a message saying which.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# Marks and overrides that reorder how text is displayed (Unicode bidirectional controls).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def forbidden_character(text: str) -> str | None:
    """A description of the first character a name may not hold, or None."""
    for char in text:
        if char in "\r\n\u2028\u2029\x85":
            return "a line break"
        if char == "\t":
            return "a tab"
        if char in BIDI_CONTROLS:
            return f"a character that changes the text direction (U+{ord(char):04X})"
        if unicodedata.category(char) == "Cc":
            return f"a control character (U+{ord(char):04X})"
    return None


@deconstructible
class NameValidator:
    def __call__(self, value: str) -> None:
        found = forbidden_character(str(value))
        if found:
            raise ValidationError(
                f"A name cannot contain {found}. Type the name again on one line, using "
                "letters, digits, spaces and punctuation.",
                code="invalid_character",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameValidator)

    def __hash__(self) -> int:
        return hash(NameValidator)


name_validator = NameValidator()
