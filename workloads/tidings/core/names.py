"""Display names people see: normalised, and without the characters used to pose as
someone else.

- NFKC normalisation: compatibility forms become the plain ones (a full-width A,
  U+FF21, is a plain A; ligatures split), so two names that look the same are the same string;
- refused: control characters (Unicode category Cc) and format characters (Cf): the
  bidirectional overrides and isolates (U+202A to U+202E, U+2066 to U+2069) that make text
  display in another order than it is stored, and the zero-width characters (U+200B to
  U+200D, U+2060, U+FEFF) that make two different names look identical;
- surrounding white space is dropped; an empty result is refused.
"""

from __future__ import annotations

import unicodedata

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf"})


def clean_display_name(text: str) -> str:
    """The name to store; ValueError (with the reason) when it cannot be one."""
    normal = unicodedata.normalize("NFKC", text).strip()
    for char in normal:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(
                f"display names may not contain control or invisible formatting characters "
                f"(U+{ord(char):04X})"
            )
    if not normal:
        raise ValueError("display name is empty")
    return normal
