"""Lab policy: which accounts may create groups and message each other directly.

Two server settings decide it (``server.config``). ``group_creators`` is
``"everyone"`` or ``"staff"``: with ``"staff"`` only staff accounts may
create group chats. ``direct_messages`` is ``"everyone"`` or ``"staff"``:
with ``"staff"`` an account that is not staff may add and message only
staff accounts, while staff may message anyone. The functions read only
their arguments, so they are cheap enough for the commit writer's thread.
"""

from __future__ import annotations

from server.config import ServerConfig
from server.store import User

EVERYONE = "everyone"


def may_create_groups(config: ServerConfig, user: User) -> bool:
    """Return whether ``user`` may create a group chat under ``config``."""
    if config.group_creators == EVERYONE:
        return True
    return user.staff


def direct_messages_restricted(config: ServerConfig) -> bool:
    """Return whether ``may_message_directly`` can be false under ``config``.

    Lets a caller skip reading the sender's row when every pair may talk.
    """
    return config.direct_messages != EVERYONE


def may_message_directly(config: ServerConfig, sender: User, recipient: User) -> bool:
    """Return whether ``sender`` may add ``recipient`` as a contact and message them.

    Contacts are mutual, so a pupil whom a teacher added may reply to that
    teacher, because the recipient is staff then.
    """
    if config.direct_messages == EVERYONE:
        return True
    return sender.staff or recipient.staff
