"""Canonical usernames, shared by client and server.

A username is compared after NFKC normalization and Unicode case folding,
so "Alice", "ALICE" and the full-width "Ａｌｉｃｅ" are one account. After
that it must be 3 to 32 characters of ASCII letters, digits, ".", "_" and
"-".
"""

from __future__ import annotations

import re
import unicodedata

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32

# NOTE: letters outside ASCII are rejected so that look-alike names from
# other scripts ("аlice" with a Cyrillic "а") cannot pose as a classmate.
_USERNAME_PATTERN = re.compile(r"[a-z0-9._-]+")


class InvalidUsername(ValueError):
    """The text cannot be a username; ``str(error)`` says why, for people."""


def canonical_username(raw: str) -> str:
    """Return the canonical form of ``raw`` or raise :class:`InvalidUsername`."""
    name = unicodedata.normalize("NFKC", raw).casefold()
    if len(name) < USERNAME_MIN_LENGTH:
        raise InvalidUsername(
            f"A username needs at least {USERNAME_MIN_LENGTH} characters."
        )
    if len(name) > USERNAME_MAX_LENGTH:
        raise InvalidUsername(
            f"A username can have at most {USERNAME_MAX_LENGTH} characters."
        )
    if not _USERNAME_PATTERN.fullmatch(name):
        raise InvalidUsername(
            "A username may contain only letters a-z, digits, '.', '_' and '-'."
        )
    return name
