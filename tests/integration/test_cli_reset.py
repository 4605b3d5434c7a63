"""redeem-reset on a profile that already holds the account."""

from __future__ import annotations

from tests.integration.test_cli import NEW_PASSWORD, register_pair
from tests.integration.test_client_core import reset_code


def test_redeem_reset_without_old_password_rejected(server, tmp_path):
    alice, _bob = register_pair(server, tmp_path)
    code = reset_code(server, "alice")
    new = {"ENCTALK_PASSWORD": NEW_PASSWORD}

    refused = alice.run("redeem-reset", "alice", code, env=new)
    assert refused.returncode == 2
    assert "--discard-local-data" in refused.stderr
    assert "ENCTALK_OLD_PASSWORD" in refused.stderr
    assert not list(alice.profile.glob("*.old-*"))

    reset = alice.run("redeem-reset", "alice", code, "--discard-local-data", env=new)
    assert reset.returncode == 0, reset.stderr
    assert "renamed to *.old-DATE and kept" in reset.stderr
    moved = sorted(
        path.name.split(".old-")[0] for path in alice.profile.glob("*.old-*")
    )
    assert moved == ["history.sqlite3", "vault"]
