"""The one exception type of the client layer.

Every failure a front end shows to the user is a :class:`ClientError`: a
stable snake_case ``code`` for programs (the server's error code where the
server reported it) and a one-line ``message`` for people.
"""

from __future__ import annotations

from typing import Any

# Codes the client produces itself, besides the server's error codes.
WEAK_PASSWORD = "weak_password"
WRONG_PASSWORD = "wrong_password"
NOT_LOGGED_IN = "not_logged_in"
NO_SERVER = "no_server"
INVALID_ADDRESS = "invalid_address"
INVALID_USERNAME = "invalid_username"
CONNECTION_FAILED = "connection_failed"
TIMEOUT = "timeout"
CERTIFICATE_CHANGED = "certificate_changed"
CERTIFICATE_REJECTED = "certificate_rejected"
IDENTITY_INVALID = "identity_invalid"
PROFILE_INVALID = "profile_invalid"
SAVE_FAILED = "save_failed"
UNKNOWN_CONTACT = "unknown_contact"
INVALID_MESSAGE = "invalid_message"
ATTACHMENT_INVALID = "attachment_invalid"
AUDIO_UNAVAILABLE = "audio_unavailable"
UNKNOWN_GROUP = "unknown_group"
GROUP_INVALID = "group_invalid"
NOT_ALLOWED = "not_allowed"


class ClientError(Exception):
    """A client operation failed; ``str(error)`` is a sentence for people."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


def save_failed(path: object, exc: BaseException) -> ClientError:
    """Return the ClientError for a profile file that could not be written."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return ClientError(
        SAVE_FAILED,
        f"Cannot save the profile: writing {path} failed ({reason}). Check that "
        "the profile directory is writable and the disk is not full.",
    )


def profile_damaged(
    description: str, path: object, reason: str, remedy: str
) -> ClientError:
    """Return the ClientError for a profile file whose content is unusable."""
    return ClientError(
        PROFILE_INVALID,
        f"The profile's {description} {path} is damaged ({reason}). {remedy}",
    )
