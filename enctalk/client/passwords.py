"""Client-side password rules.

Only the client ever sees a password (the server gets a derived auth key),
so only the client can check one. The rules follow NIST SP 800-63B: a
minimum length, a generous maximum, no composition rules, and a check
against a list of commonly used passwords. Length is counted in Unicode
code points after NFKC normalization, the form the key derivation uses.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

from enctalk.client.errors import WEAK_PASSWORD, ClientError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_COMMON_PASSWORDS_FILE = "common_passwords.txt"


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """Return the shipped list of common passwords, case-folded."""
    text = (
        resources.files("enctalk.client")
        .joinpath(_COMMON_PASSWORDS_FILE)
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().casefold()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, username: str | None = None) -> str | None:
    """Return why ``password`` is not acceptable, or ``None`` if it is."""
    normalized = unicodedata.normalize("NFKC", password)
    if len(normalized) < MIN_PASSWORD_LENGTH:
        return f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(normalized) > MAX_PASSWORD_LENGTH:
        return f"The password can have at most {MAX_PASSWORD_LENGTH} characters."
    folded = normalized.casefold()
    if folded in common_passwords():
        return "This password is on a list of commonly used passwords; choose another."
    if (
        username is not None
        and folded == unicodedata.normalize("NFKC", username).casefold()
    ):
        return "The password must not be the same as the username."
    return None


def check_new_password(password: str, username: str | None = None) -> None:
    """Raise ClientError ``weak_password`` unless ``password`` is acceptable."""
    problem = password_problem(password, username)
    if problem is not None:
        raise ClientError(WEAK_PASSWORD, problem)
