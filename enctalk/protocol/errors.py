"""Error codes of the EncTalk wire protocol and the protocol-layer exception.

An error frame carries a stable snake_case ``code`` for programs and a
``message`` sentence for people. Codes never change meaning once shipped;
front ends map them to their own wording.
"""

from __future__ import annotations

from typing import Any

# Framing and schema
INVALID_FRAME = "invalid_frame"
FRAME_TOO_LARGE = "frame_too_large"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_TYPE = "unknown_type"

# Accounts and sessions
NOT_AUTHENTICATED = "not_authenticated"
INVALID_CREDENTIALS = "invalid_credentials"
INVALID_USERNAME = "invalid_username"
USERNAME_TAKEN = "username_taken"
INVALID_SESSION = "invalid_session"
ACCOUNT_DISABLED = "account_disabled"
INVALID_RESET_CODE = "invalid_reset_code"
RATE_LIMITED = "rate_limited"
# The account (the caller's at login, or the one named) was imported from a
# roster and its setup code is not redeemed yet.
SETUP_REQUIRED = "setup_required"
# The lab policy of the server forbids the request for this account.
NOT_ALLOWED = "not_allowed"

# Devices, contacts and messages
NO_DEVICE = "no_device"
DEVICE_NOT_FOUND = "device_not_found"
USER_NOT_FOUND = "user_not_found"
NOT_A_CONTACT = "not_a_contact"
DEVICE_LIST_MISMATCH = "device_list_mismatch"
MESSAGE_ID_CONFLICT = "message_id_conflict"
INVALID_SIGNATURE = "invalid_signature"

# Attachments
ATTACHMENT_TOO_LARGE = "attachment_too_large"
QUOTA_EXCEEDED = "quota_exceeded"
ATTACHMENT_NOT_FOUND = "attachment_not_found"
INVALID_OFFSET = "invalid_offset"

# Groups
GROUP_NOT_FOUND = "group_not_found"
GROUP_EXISTS = "group_exists"
GROUP_OUTDATED = "group_outdated"
NOT_ALLOWED = "not_allowed"
MUTED = "muted"
READ_ONLY = "read_only"
INVALID_GROUP_OP = "invalid_group_op"

# Server side
BUSY = "busy"
INTERNAL_ERROR = "internal_error"

ERROR_CODES = frozenset(
    {
        INVALID_FRAME,
        FRAME_TOO_LARGE,
        UNSUPPORTED_VERSION,
        UNKNOWN_TYPE,
        NOT_AUTHENTICATED,
        INVALID_CREDENTIALS,
        INVALID_USERNAME,
        USERNAME_TAKEN,
        INVALID_SESSION,
        ACCOUNT_DISABLED,
        INVALID_RESET_CODE,
        RATE_LIMITED,
        SETUP_REQUIRED,
        NOT_ALLOWED,
        NO_DEVICE,
        DEVICE_NOT_FOUND,
        USER_NOT_FOUND,
        NOT_A_CONTACT,
        DEVICE_LIST_MISMATCH,
        MESSAGE_ID_CONFLICT,
        INVALID_SIGNATURE,
        ATTACHMENT_TOO_LARGE,
        QUOTA_EXCEEDED,
        ATTACHMENT_NOT_FOUND,
        INVALID_OFFSET,
        GROUP_NOT_FOUND,
        GROUP_EXISTS,
        GROUP_OUTDATED,
        NOT_ALLOWED,
        MUTED,
        READ_ONLY,
        INVALID_GROUP_OP,
        BUSY,
        INTERNAL_ERROR,
    }
)


class ProtocolError(Exception):
    """A peer sent something the protocol does not allow.

    ``code`` is one of the codes above; ``str(error)`` is a sentence for
    people. ``fatal`` is true when the byte stream can no longer be trusted
    to be in sync, so the connection must close after the error frame.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        fatal: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.details = details or {}
