"""Events the client core reports to its front ends.

The core puts :class:`Event` objects on a :class:`queue.Queue`; a GUI
drains it from its main loop (Tk's ``after``) and the CLI prints them.
Each event has a ``name`` and a dict of JSON-safe ``data``:

- ``message_received``: conversation (``#`` and the group id for a
  group message), group (the group id, or None), sender, sender_device, body,
  message_id, server_seq, server_time, sent_at (sender's clock, ms),
  kind (``text`` or ``audio``) and, for audio, attachment (the reference
  without its key: attachment_id, size, duration, sha256, name).
- ``attachment_progress``: message_id, direction (``up`` or ``down``),
  done and total bytes.
- ``decrypt_failed``: conversation, sender, sender_device, message_id,
  server_seq.
- ``delivery_updated``: message_id, conversation, state (``sending``,
  ``sent``, ``delivered``, ``failed``), and ``error`` when failed.
- ``presence_changed``: username, online.
- ``contact_added``: username, online, display_name (the username when
  the server sends none).
- ``identity_changed``: username, old_fingerprint, new_fingerprint.
- ``connection_state``: state (``connecting``, ``connected``,
  ``reconnecting``, ``offline``), ``retry_in`` seconds and ``error`` when
  known.
- ``session_revoked``: reason.
- ``prekeys_low``: remaining.
- ``prekeys_uploaded``: count (the number the server now holds).
- ``group_updated``: group_id, conversation (``#`` and the group id),
  epoch, action, actor, target, text (the conversation line) and member
  (false once this account was removed or left).
- ``message_deleted``: conversation, message_id (deleted for everyone).
- ``error``: code, message (a background operation failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MESSAGE_RECEIVED = "message_received"
DECRYPT_FAILED = "decrypt_failed"
DELIVERY_UPDATED = "delivery_updated"
PRESENCE_CHANGED = "presence_changed"
CONTACT_ADDED = "contact_added"
IDENTITY_CHANGED = "identity_changed"
CONNECTION_STATE = "connection_state"
SESSION_REVOKED = "session_revoked"
PREKEYS_LOW = "prekeys_low"
PREKEYS_UPLOADED = "prekeys_uploaded"
GROUP_UPDATED = "group_updated"
MESSAGE_DELETED = "message_deleted"
ERROR = "error"


@dataclass(frozen=True)
class Event:
    """One thing that happened, named by ``name``, with JSON-safe ``data``."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **self.data}
