"""Lab policy: who may create groups.

NOTE: a placeholder until the lab settings land; everyone may create groups.
"""

from __future__ import annotations

from typing import Any


def may_create_groups(config: Any, user: Any) -> bool:
    """Return True if ``user`` may create groups under ``config``."""
    return True
