"""Schemas of every EncTalk frame, and their validation.

Each frame type has a fixed set of fields, each with a type, a length or
range, and for strings the allowed characters. :func:`validate_request`
checks a frame a client sent, :func:`validate_push` one the server pushed,
and :func:`validate_reply` the ``ok`` reply to a given request type.
Validation returns a new dict in which every base64 field is decoded to
``bytes``, so handlers never see undecoded binary data; unknown fields are
rejected. Binary fields are URL-safe base64 with padding
(``base64.urlsafe_b64encode``); :func:`b64` makes them.

Cost: linear in the frame size; lists are bounded before their items are
checked.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enctalk.protocol import errors
from enctalk.protocol.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_REQUEST_ID = 2**53 - 1
MAX_INT = 2**63 - 1

KEY_SIZE = 32
SIGNATURE_SIZE = 64
TOKEN_SIZE = 32
MAX_BACKUP_SIZE = 4096
MAX_ENVELOPE_SIZE = 4096
# Its base64 plus the envelopes must fit the default 1 MiB frame.
MAX_PAYLOAD_SIZE = 700 * 1024
MAX_ENVELOPES = 1000
MAX_PREKEYS_PER_FRAME = 200
MAX_DEVICES = 1000
MAX_CONTACTS = 10000
MAX_NAME_LENGTH = 64
MAX_DISPLAY_NAME_LENGTH = 64
MAX_CLASS_LABEL_LENGTH = 32
# A class_members reply lists at most this many accounts, and a
# list_classes reply this many labels; both fit the default 1 MiB frame.
MAX_CLASS_MEMBERS = 2000
MAX_CLASSES = 1000
MAX_TEXT_LENGTH = 1000
# One attachment chunk: its base64 (about 683 KiB) fits the default 1 MiB frame.
MAX_CHUNK_SIZE = 512 * 1024
ATTACHMENT_ID_LENGTH = 32
GROUP_ID_LENGTH = 32
MAX_GROUP_MEMBERS = 500
# Operations in one group_log reply at most; a longer log is paged.
MAX_GROUP_OPS_PER_FRAME = 500
MAX_GROUPS = 1000
MAX_BUNDLE_USERS = 500

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SNAKE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEX_ID = re.compile(f"[0-9a-f]{{{ATTACHMENT_ID_LENGTH}}}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def b64(data: bytes) -> str:
    """Encode bytes for a binary field."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def _invalid(path: str, problem: str) -> ProtocolError:
    return ProtocolError(errors.INVALID_FRAME, f"field '{path}' {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Field:
    """A field type; ``check`` returns the validated (maybe decoded) value."""

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Field):
    """A string of ``min_length`` to ``max_length`` characters.

    Control characters (Unicode category Cc) are rejected unless
    ``multiline`` allows line feeds and tabs. Surrogates are always
    rejected: strict UTF-8 cannot carry one, but a JSON ``\\ud800`` escape
    can, and such a string cannot be encoded again.
    """

    max_length: int = MAX_NAME_LENGTH
    min_length: int = 0
    pattern: re.Pattern[str] | None = None
    multiline: bool = False
    # Usernames keep control characters so that the handler can reject
    # them with invalid_username, which names the rule, not invalid_frame.
    control_allowed: bool = False

    def check(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _invalid(path, "must be a string")
        if not self.min_length <= len(value) <= self.max_length:
            if self.min_length == self.max_length:
                raise _invalid(path, f"must have exactly {self.min_length} characters")
            raise _invalid(
                path,
                f"must have {self.min_length} to {self.max_length} characters",
            )
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise _invalid(path, "has an invalid format")
        if _SURROGATE.search(value):
            raise _invalid(path, "contains a lone surrogate")
        if self.control_allowed:
            return value
        allowed = "\n\t" if self.multiline else ""
        for char in value:
            if (char < " " or "\x7f" <= char <= "\x9f") and char not in allowed:
                raise _invalid(path, "contains a control character")
        return value


@dataclass(frozen=True)
class Integer(Field):
    """An integer in ``[minimum, maximum]``; booleans are not integers."""

    minimum: int = 0
    maximum: int = MAX_INT

    def check(self, value: Any, path: str) -> int:
        if not _is_int(value):
            raise _invalid(path, "must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise _invalid(path, f"must be between {self.minimum} and {self.maximum}")
        return int(value)


@dataclass(frozen=True)
class Boolean(Field):
    def check(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise _invalid(path, "must be true or false")
        return value


@dataclass(frozen=True)
class Binary(Field):
    """URL-safe base64 with padding, decoding to ``min_size``..``max_size`` bytes."""

    min_size: int
    max_size: int

    def check(self, value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise _invalid(path, "must be a base64 string")
        # Reject before decoding anything longer than the largest valid value.
        if len(value) > 4 * ((self.max_size + 2) // 3):
            raise _invalid(path, f"must decode to at most {self.max_size} bytes")
        try:
            raw = value.encode("ascii")
            data = base64.b64decode(raw, altchars=b"-_", validate=True)
        except (UnicodeEncodeError, binascii.Error) as exc:
            raise _invalid(path, "is not URL-safe base64 with padding") from exc
        if b"+" in raw or b"/" in raw or base64.urlsafe_b64encode(data) != raw:
            raise _invalid(path, "is not URL-safe base64 with padding")
        if not self.min_size <= len(data) <= self.max_size:
            if self.min_size == self.max_size:
                raise _invalid(path, f"must decode to exactly {self.min_size} bytes")
            raise _invalid(
                path, f"must decode to {self.min_size} to {self.max_size} bytes"
            )
        return data


@dataclass(frozen=True)
class Optional(Field):
    """A field that may be absent or null; both validate to ``None``."""

    inner: Field

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            return None
        return self.inner.check(value, path)


@dataclass(frozen=True)
class ListOf(Field):
    item: Field
    max_items: int
    min_items: int = 0

    def check(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _invalid(path, "must be a list")
        if not self.min_items <= len(value) <= self.max_items:
            raise _invalid(
                path, f"must have {self.min_items} to {self.max_items} items"
            )
        return [
            self.item.check(item, f"{path}[{index}]")
            for index, item in enumerate(value)
        ]


@dataclass(frozen=True)
class Object(Field):
    fields: Mapping[str, Field]

    def check(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _invalid(path, "must be an object")
        return check_fields(self.fields, value, path + ".")


@dataclass(frozen=True)
class Details(Field):
    """Free-form error details: a JSON object, checked only for its type."""

    def check(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _invalid(path, "must be an object")
        return value


def check_fields(
    spec: Mapping[str, Field], frame: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """Validate ``frame`` against ``spec``: no unknown fields, none missing."""
    for name in frame:
        if name not in spec:
            raise _invalid(prefix + name, "is not expected here")
    result: dict[str, Any] = {}
    for name, field in spec.items():
        if name not in frame:
            if isinstance(field, Optional):
                result[name] = None
                continue
            raise _invalid(prefix + name, "is missing")
        result[name] = field.check(frame[name], prefix + name)
    return result


# Shared field shapes
USERNAME = Text(max_length=MAX_NAME_LENGTH, min_length=1, control_allowed=True)
KEY = Binary(KEY_SIZE, KEY_SIZE)
SIGNATURE = Binary(SIGNATURE_SIZE, SIGNATURE_SIZE)
TOKEN = Binary(TOKEN_SIZE, TOKEN_SIZE)
BACKUP = Binary(1, MAX_BACKUP_SIZE)
DEVICE_ID = Integer(1, 2**31 - 1)
PREKEY_ID = Integer(0, 2**31 - 1)
SEQUENCE = Integer(0, MAX_INT)
TIMESTAMP_MS = Integer(0, MAX_INT)
MESSAGE_ID = Text(max_length=36, min_length=36, pattern=_UUID)
SIGNED_PREKEY = Object({"id": PREKEY_ID, "key": KEY, "signature": SIGNATURE})
ONE_TIME_PREKEY = Object({"id": PREKEY_ID, "key": KEY})
DEVICE_ADDRESS = Object({"username": USERNAME, "device_id": DEVICE_ID})
ATTACHMENT_ID = Text(
    max_length=ATTACHMENT_ID_LENGTH, min_length=ATTACHMENT_ID_LENGTH, pattern=_HEX_ID
)
ATTACHMENT_SIZE = Integer(1, MAX_INT)
DISPLAY_NAME = Text(MAX_DISPLAY_NAME_LENGTH, 1)
CLASS_LABEL = Text(MAX_CLASS_LABEL_LENGTH, 1)
CHUNK = Binary(1, MAX_CHUNK_SIZE)
GROUP_ID = Text(max_length=GROUP_ID_LENGTH, min_length=GROUP_ID_LENGTH, pattern=_HEX_ID)
# A group conversation is named "#" + group id, which no username can be.
CONVERSATION = Text(max_length=GROUP_ID_LENGTH + 1, min_length=1, control_allowed=True)
GROUP_OP = Object(
    {
        "group_id": GROUP_ID,
        "index": Integer(1, MAX_INT),
        "prev": Binary(32, 32),
        "actor": USERNAME,
        "actor_key": KEY,
        "action": Text(16, 1, pattern=_SNAKE),
        "target": Text(MAX_NAME_LENGTH, control_allowed=True),
        "value": Text(MAX_TEXT_LENGTH),
        "time": TIMESTAMP_MS,
        "signature": SIGNATURE,
    }
)
ENVELOPES = ListOf(
    Object(
        {
            "username": USERNAME,
            "device_id": DEVICE_ID,
            "body": Binary(1, MAX_ENVELOPE_SIZE),
        }
    ),
    MAX_ENVELOPES,
)

# Requests a client sends. The server replies to each with "ok" or "error".
REQUESTS: dict[str, dict[str, Field]] = {
    "hello": {"version": Integer(1, 65535), "client": Text(MAX_NAME_LENGTH)},
    "register": {
        "username": USERNAME,
        "auth_key": KEY,
        "identity_key": KEY,
        "backup": BACKUP,
    },
    "login": {
        "username": USERNAME,
        "auth_key": KEY,
        "device_id": Optional(DEVICE_ID),
    },
    "resume": {"token": TOKEN, "device_id": Optional(DEVICE_ID)},
    "logout": {},
    "change_password": {
        "old_auth_key": KEY,
        "new_auth_key": KEY,
        "backup": BACKUP,
    },
    "redeem_reset": {
        "username": USERNAME,
        "code": Text(64, 1),
        "new_auth_key": KEY,
        "identity_key": KEY,
        "backup": BACKUP,
    },
    "upload_backup": {"backup": BACKUP},
    "fetch_backup": {},
    "register_device": {
        "name": Text(MAX_NAME_LENGTH),
        "identity_key": KEY,
        "signature": SIGNATURE,
        "signed_prekey": SIGNED_PREKEY,
        "one_time_prekeys": ListOf(ONE_TIME_PREKEY, MAX_PREKEYS_PER_FRAME),
    },
    "upload_prekeys": {
        "signed_prekey": Optional(SIGNED_PREKEY),
        "one_time_prekeys": ListOf(ONE_TIME_PREKEY, MAX_PREKEYS_PER_FRAME),
    },
    "fetch_bundles": {"username": USERNAME},
    "list_devices": {},
    "remove_device": {"device_id": DEVICE_ID},
    "add_contact": {"username": USERNAME},
    "list_contacts": {},
    "list_classes": {},
    "class_members": {"group": CLASS_LABEL},
    "send": {
        "message_id": MESSAGE_ID,
        "to": USERNAME,
        "payload": Binary(1, MAX_PAYLOAD_SIZE),
        "envelopes": ENVELOPES,
    },
    "group_send": {
        "message_id": MESSAGE_ID,
        "group_id": GROUP_ID,
        "epoch": Integer(1, MAX_INT),
        "payload": Binary(1, MAX_PAYLOAD_SIZE),
        "envelopes": ENVELOPES,
    },
    "group_op": {"op": GROUP_OP},
    "group_log": {"group_id": GROUP_ID, "after": Integer(0, MAX_INT)},
    "list_groups": {},
    "group_members": {"group_id": GROUP_ID},
    "fetch_bundle_set": {
        "usernames": ListOf(USERNAME, MAX_BUNDLE_USERS, min_items=1),
    },
    "lookup_identities": {
        "usernames": ListOf(USERNAME, MAX_BUNDLE_USERS, min_items=1),
    },
    "sync": {"after": SEQUENCE},
    "ack": {"upto": SEQUENCE},
    "attachment_create": {"to": CONVERSATION, "size": ATTACHMENT_SIZE},
    "attachment_upload": {
        "attachment_id": ATTACHMENT_ID,
        "offset": Integer(0, MAX_INT),
        "data": CHUNK,
    },
    "attachment_status": {"attachment_id": ATTACHMENT_ID},
    "attachment_download": {
        "attachment_id": ATTACHMENT_ID,
        "offset": Integer(0, MAX_INT),
        "length": Integer(1, MAX_CHUNK_SIZE),
    },
    "ping": {},
}

DEVICE_BUNDLE = Object(
    {
        "device_id": DEVICE_ID,
        "identity_key": KEY,
        "signature": SIGNATURE,
        "signed_prekey": SIGNED_PREKEY,
        "one_time_prekey": Optional(ONE_TIME_PREKEY),
    }
)
DEVICE_INFO = Object(
    {
        "device_id": DEVICE_ID,
        "name": Text(MAX_NAME_LENGTH),
        "created": TIMESTAMP_MS,
        "last_seen": TIMESTAMP_MS,
        "stale": Boolean(),
        "current": Boolean(),
    }
)
# display_name is optional so that replies of servers before it validate.
CONTACT_FIELDS: dict[str, Field] = {
    "username": USERNAME,
    "online": Boolean(),
    "identity_key": KEY,
    "display_name": Optional(DISPLAY_NAME),
}
CONTACT = Object(CONTACT_FIELDS)
CLASS_MEMBER = Object(
    {"username": USERNAME, "display_name": DISPLAY_NAME, "pending": Boolean()}
)
LOGGED_GROUP_OP = Object(
    {"op": GROUP_OP, "server_seq": SEQUENCE, "server_time": TIMESTAMP_MS}
)
GROUP_SUMMARY = Object(
    {"group_id": GROUP_ID, "name": Text(MAX_TEXT_LENGTH), "epoch": Integer(0, MAX_INT)}
)
GROUP_MEMBER = Object(
    {
        "username": USERNAME,
        "role": Text(16, 1, pattern=_SNAKE),
        "muted": Boolean(),
        "online": Boolean(),
        "display_name": Optional(DISPLAY_NAME),
        "pending": Optional(Boolean()),
    }
)
USER_BUNDLES = Object(
    {
        "username": USERNAME,
        "identity_key": KEY,
        "devices": ListOf(DEVICE_BUNDLE, MAX_DEVICES),
    }
)

# Fields of the "ok" reply to each request type, besides "type" and "id".
REPLIES: dict[str, dict[str, Field]] = {
    "hello": {},
    "register": {"token": TOKEN, "username": USERNAME},
    "login": {
        "token": TOKEN,
        "username": USERNAME,
        "identity_key": KEY,
        "backup": BACKUP,
        "backup_stale": Boolean(),
        "device_id": Optional(DEVICE_ID),
    },
    "resume": {
        "username": USERNAME,
        "identity_key": KEY,
        "device_id": Optional(DEVICE_ID),
    },
    "logout": {},
    "change_password": {"token": TOKEN},
    "redeem_reset": {"token": TOKEN, "username": USERNAME},
    "upload_backup": {},
    "fetch_backup": {"backup": BACKUP, "backup_stale": Boolean()},
    "register_device": {"device_id": DEVICE_ID},
    "upload_prekeys": {"one_time_prekeys": Integer(0, 2**31 - 1)},
    "fetch_bundles": {
        "username": USERNAME,
        "identity_key": KEY,
        "devices": ListOf(DEVICE_BUNDLE, MAX_DEVICES),
    },
    "list_devices": {"devices": ListOf(DEVICE_INFO, MAX_DEVICES)},
    "remove_device": {},
    "add_contact": dict(CONTACT_FIELDS),
    "list_contacts": {"contacts": ListOf(CONTACT, MAX_CONTACTS)},
    "list_classes": {"classes": ListOf(CLASS_LABEL, MAX_CLASSES)},
    "class_members": {
        "group": CLASS_LABEL,
        "members": ListOf(CLASS_MEMBER, MAX_CLASS_MEMBERS),
    },
    "send": {
        "message_id": MESSAGE_ID,
        "server_seq": SEQUENCE,
        "server_time": TIMESTAMP_MS,
        "duplicate": Boolean(),
    },
    "group_send": {
        "message_id": MESSAGE_ID,
        "server_seq": SEQUENCE,
        "server_time": TIMESTAMP_MS,
        "duplicate": Boolean(),
    },
    "group_op": {
        "server_seq": SEQUENCE,
        "server_time": TIMESTAMP_MS,
        "epoch": Integer(1, MAX_INT),
    },
    "group_log": {
        "ops": ListOf(LOGGED_GROUP_OP, MAX_GROUP_OPS_PER_FRAME),
        "epoch": Integer(0, MAX_INT),
    },
    "list_groups": {"groups": ListOf(GROUP_SUMMARY, MAX_GROUPS)},
    "group_members": {
        "epoch": Integer(0, MAX_INT),
        "members": ListOf(GROUP_MEMBER, MAX_GROUP_MEMBERS),
    },
    "fetch_bundle_set": {"users": ListOf(USER_BUNDLES, MAX_BUNDLE_USERS)},
    "lookup_identities": {
        "users": ListOf(
            Object(
                {
                    "username": USERNAME,
                    "identity_key": KEY,
                    "display_name": Optional(DISPLAY_NAME),
                }
            ),
            MAX_BUNDLE_USERS,
        )
    },
    "sync": {"last": SEQUENCE},
    "ack": {},
    "attachment_create": {"attachment_id": ATTACHMENT_ID},
    "attachment_upload": {"received": Integer(0, MAX_INT)},
    "attachment_status": {
        "received": Integer(0, MAX_INT),
        "size": ATTACHMENT_SIZE,
        "complete": Boolean(),
    },
    "attachment_download": {
        "data": CHUNK,
        "offset": Integer(0, MAX_INT),
        "size": ATTACHMENT_SIZE,
    },
    "ping": {},
}

# Frames the server sends unasked; they carry no "id".
PUSHES: dict[str, dict[str, Field]] = {
    "hello": {
        "version": Integer(1, 65535),
        "server": Text(MAX_NAME_LENGTH),
        "max_frame_size": Integer(1, 2**32 - 1),
    },
    "message": {
        "seq": SEQUENCE,
        "message_id": MESSAGE_ID,
        "from": USERNAME,
        "from_device": DEVICE_ID,
        "to": CONVERSATION,
        "server_seq": SEQUENCE,
        "server_time": TIMESTAMP_MS,
        "payload": Binary(1, MAX_PAYLOAD_SIZE),
        "envelope": Binary(1, MAX_ENVELOPE_SIZE),
        "group": Optional(GROUP_ID),
    },
    "group_op": {
        "seq": SEQUENCE,
        "op": GROUP_OP,
        "server_seq": SEQUENCE,
        "server_time": TIMESTAMP_MS,
    },
    "dropped": {"seq": SEQUENCE},
    "receipt": {
        "seq": SEQUENCE,
        "message_id": MESSAGE_ID,
        "username": USERNAME,
        "device_id": DEVICE_ID,
    },
    "presence": {"username": USERNAME, "online": Boolean()},
    "contact_added": dict(CONTACT_FIELDS),
    "prekeys_low": {"remaining": Integer(0, 2**31 - 1)},
    "session_revoked": {"reason": Text(MAX_TEXT_LENGTH)},
}

ERROR_FIELDS: dict[str, Field] = {
    "code": Text(64, 1, pattern=_SNAKE),
    "message": Text(MAX_TEXT_LENGTH, multiline=True),
    "details": Optional(Details()),
    "retry_after": Optional(Integer(0, 86400)),
}

_REQUEST_ID = Integer(0, MAX_REQUEST_ID)


def _split_envelope(frame: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise _invalid("type", "is missing or not a string")
    body = {key: value for key, value in frame.items() if key not in ("type", "id")}
    return kind, body


def request_id(frame: Mapping[str, Any]) -> int | None:
    """Return the frame's ``id`` if it is a valid request id, else ``None``.

    Used to address an error reply even when the rest of the frame is
    invalid.
    """
    value = frame.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_REQUEST_ID:
            return value
    return None


def validate_request(
    frame: Mapping[str, Any],
) -> tuple[str, int | None, dict[str, Any]]:
    """Check a client's request; return ``(type, id, fields)``.

    Raises :class:`ProtocolError` with ``unknown_type`` or ``invalid_frame``.
    """
    kind, body = _split_envelope(frame)
    spec = REQUESTS.get(kind)
    if spec is None:
        raise ProtocolError(errors.UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}")
    frame_id = None
    if "id" in frame:
        frame_id = _REQUEST_ID.check(frame["id"], "id")
    return kind, frame_id, check_fields(spec, body)


def validate_reply(request_type: str, frame: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``ok`` reply to a request of ``request_type``; return its fields."""
    _, body = _split_envelope(frame)
    return check_fields(REPLIES[request_type], body)


def validate_error(frame: Mapping[str, Any]) -> dict[str, Any]:
    """Check an ``error`` frame; return its fields."""
    _, body = _split_envelope(frame)
    return check_fields(ERROR_FIELDS, body)


def validate_push(frame: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Check a frame the server pushed; return ``(type, fields)``."""
    kind, body = _split_envelope(frame)
    spec = PUSHES.get(kind)
    if spec is None:
        raise ProtocolError(errors.UNKNOWN_TYPE, f"unknown frame type {kind[:64]!r}")
    return kind, check_fields(spec, body)


def make_request(
    kind: str, frame_id: int | None = None, **fields: Any
) -> dict[str, Any]:
    """Build a request frame, encoding ``bytes`` values as base64."""
    return _build(kind, frame_id, fields)


def make_reply(frame_id: int | None, **fields: Any) -> dict[str, Any]:
    """Build an ``ok`` reply, encoding ``bytes`` values as base64."""
    return _build("ok", frame_id, fields)


def make_push(kind: str, **fields: Any) -> dict[str, Any]:
    """Build a pushed frame, encoding ``bytes`` values as base64."""
    return _build(kind, None, fields)


def make_error(
    frame_id: int | None,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """Build an ``error`` frame."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    if details:
        frame["details"] = details
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame


def _encode_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64(bytes(value))
    if isinstance(value, dict):
        return {key: _encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(item) for item in value]
    return value


def _build(kind: str, frame_id: int | None, fields: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": kind}
    if frame_id is not None:
        frame["id"] = frame_id
    for name, value in fields.items():
        # "from" is a Python keyword; callers pass it as "from_".
        frame["from" if name == "from_" else name] = _encode_value(value)
    return frame
