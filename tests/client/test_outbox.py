"""The outbox and history survive a restart, and nothing secret is on disk."""

import base64
import os

import pytest

from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from enctalk.crypto.keys import AccountIdentity

PASSWORD = "violet lantern meadow"
TOKEN = bytes(range(32))


def make_offline_client(path):
    # Port 9 (discard) on loopback: nothing listens, so sends stay queued.
    return Client(path, server="127.0.0.1:9", timeout=0.2)


@pytest.fixture
def profile_dir(tmp_path):
    client = make_offline_client(tmp_path / "profile")
    aik = AccountIdentity.generate()
    client._create_state(PASSWORD, "alice", aik, TOKEN)
    # Sending needs a contact, and offline the local contact list is all
    # the client can check.
    bob_key = AccountIdentity.generate().public_bytes()
    client._require_state()["contacts"]["bob"] = {
        "identity_key": base64.urlsafe_b64encode(bob_key).decode("ascii"),
        "verified": False,
    }
    client._save()
    client.close()
    return tmp_path / "profile", aik


def test_outbox_keeps_queued_messages_across_restart(profile_dir):
    path, _ = profile_dir
    client = make_offline_client(path)
    client.unlock(PASSWORD)
    first = client.send_text("bob", "first message", timeout=0.1)
    second = client.send_text("bob", "second message", timeout=0.1)
    client.close()
    assert first.state == "queued"
    assert second.state == "queued"

    again = make_offline_client(path)
    again.unlock(PASSWORD)
    outbox = again.outbox()
    assert [item["message_id"] for item in outbox] == [
        first.message_id,
        second.message_id,
    ]
    assert [item["body"] for item in outbox] == ["first message", "second message"]
    history = again.history("bob")
    assert [entry.body for entry in history] == ["first message", "second message"]
    assert all(entry.state == "sending" for entry in history)
    again.close()


def test_unlock_with_wrong_password_raises_wrong_password(profile_dir):
    path, _ = profile_dir
    client = make_offline_client(path)
    with pytest.raises(ClientError) as info:
        client.unlock("not the password")
    client.close()
    assert info.value.code == "wrong_password"


def test_profile_files_contain_no_secrets(profile_dir):
    path, aik = profile_dir
    client = make_offline_client(path)
    client.unlock(PASSWORD)
    client.send_text("bob", "meet at the library", timeout=0.1)
    client.close()

    secrets = [
        b"meet at the library",
        PASSWORD.encode(),
        aik.private_bytes(),
        TOKEN,
    ]
    encoded = [base64.urlsafe_b64encode(s) for s in secrets[2:]]
    encoded += [base64.b64encode(s) for s in secrets[2:]]
    for name in os.listdir(path):
        raw = (path / name).read_bytes()
        for secret in secrets + encoded:
            assert secret not in raw, f"{name} contains a secret"


def test_send_text_without_account_raises_not_logged_in(tmp_path):
    client = make_offline_client(tmp_path / "empty")
    with pytest.raises(ClientError) as info:
        client.send_text("bob", "hello", timeout=0.1)
    client.close()
    assert info.value.code == "not_logged_in"


def test_send_text_rejects_oversized_and_empty_messages(profile_dir):
    path, _ = profile_dir
    client = make_offline_client(path)
    client.unlock(PASSWORD)
    with pytest.raises(ClientError) as too_long:
        client.send_text("bob", "x" * (64 * 1024 + 1), timeout=0.1)
    with pytest.raises(ClientError) as empty:
        client.send_text("bob", "", timeout=0.1)
    outbox = client.outbox()
    client.close()
    assert too_long.value.code == "invalid_message"
    assert empty.value.code == "invalid_message"
    assert outbox == []


def test_send_text_offline_to_unknown_user_stores_nothing(profile_dir):
    client = make_offline_client(profile_dir[0])
    try:
        client.unlock(PASSWORD)
        with pytest.raises(ClientError) as info:
            client.send_text("carol", "hello", timeout=0.1)
        assert info.value.code == "unknown_contact"
        assert "carol" in info.value.message
        assert client.outbox() == []
        assert client.history("carol") == []
    finally:
        client.close()
