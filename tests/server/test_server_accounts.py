"""Accounts and sessions against a real server: TLS on loopback, SQLite on disk."""

from __future__ import annotations

import time

import pytest
from conftest import Clients
from server_wire import ConnectionClosed, auth_key, random_key

from server.app import Server
from server.main import main


def test_hello_reports_version_and_frame_size(clients: Clients) -> None:
    client = clients.connect(hello=False)
    hello = client.server_hello
    assert hello["type"] == "hello"
    assert hello["version"] == 1
    assert hello["max_frame_size"] == 1024 * 1024
    assert "id" not in hello


def test_hello_version_mismatch_is_rejected(clients: Clients) -> None:
    client = clients.connect(hello=False)
    client.send_frame({"type": "hello", "id": 1, "version": 2, "client": "t"})
    frames = client.expect_closed()
    assert frames[0]["code"] == "unsupported_version"
    assert frames[0]["id"] == 1


def test_first_frame_must_be_hello(clients: Clients) -> None:
    client = clients.connect(hello=False)
    client.send_frame({"type": "ping", "id": 1})
    frames = client.expect_closed()
    assert frames[0]["code"] == "invalid_frame"


def test_anonymous_request_needs_login(clients: Clients) -> None:
    client = clients.connect()
    reply = client.request("list_contacts")
    assert reply["code"] == "not_authenticated"
    assert client.call("ping")["type"] == "ok"


def test_register_login_resume_logout(clients: Clients) -> None:
    alice = clients.register("Alice")
    token = alice.token

    second = clients.connect()
    login = second.call("login", username="ALICE", auth_key=auth_key("Alice"))
    assert login["username"] == "alice"
    assert login["backup"]
    assert login["backup_stale"] is False
    assert login["device_id"] is None
    assert login["token"] != token

    third = clients.connect()
    resumed = third.call("resume", token=token)
    assert resumed["username"] == "alice"
    assert third.call("list_contacts")["contacts"] == []

    assert third.call("logout")["type"] == "ok"
    assert third.request("list_contacts")["code"] == "not_authenticated"
    fourth = clients.connect()
    assert fourth.request("resume", token=token)["code"] == "invalid_session"


def test_login_failures_are_indistinguishable(clients: Clients) -> None:
    clients.register("alice")
    client = clients.connect()
    wrong_key = client.request("login", username="alice", auth_key=random_key())
    unknown = client.request("login", username="nobody", auth_key=random_key())
    assert wrong_key["code"] == "invalid_credentials"
    assert unknown["code"] == "invalid_credentials"
    assert wrong_key["message"] == unknown["message"]


def test_resume_unknown_token_is_invalid_session(clients: Clients) -> None:
    client = clients.connect()
    assert client.request("resume", token=random_key())["code"] == "invalid_session"


@pytest.mark.parametrize(
    ("username", "problem"),
    [
        ("al ice", "space"),
        ("ali\x07ce", "control character"),
        ("a" * 33, "33 characters"),
        ("ab", "too short"),
        ("аlice", "Cyrillic a"),
    ],
)
def test_register_rejects_invalid_username(
    clients: Clients, username: str, problem: str
) -> None:
    client = clients.connect()
    reply = client.request(
        "register",
        username=username,
        auth_key=random_key(),
        identity_key=random_key(),
        backup=b"b",
    )
    assert reply["code"] == "invalid_username", problem
    assert reply["message"]


def test_register_case_duplicate_is_taken(clients: Clients) -> None:
    clients.register("alice")
    client = clients.connect()
    reply = client.request(
        "register",
        username="ALICE",
        auth_key=random_key(),
        identity_key=random_key(),
        backup=b"b",
    )
    assert reply["code"] == "username_taken"


def test_register_normalizes_nfkc(clients: Clients) -> None:
    client = clients.register("Ａｌｉｃｅ")
    second = clients.connect()
    reply = second.call("login", username="alice", auth_key=auth_key("Ａｌｉｃｅ"))
    assert reply["username"] == "alice"
    assert client.call("fetch_backup")["backup"]


def test_change_password_revokes_other_sessions(clients: Clients) -> None:
    alice = clients.register("alice")
    other = clients.login("alice")
    other_token = other.token

    reply = alice.call(
        "change_password",
        old_auth_key=auth_key("alice"),
        new_auth_key=auth_key("alice", "new"),
        backup=b"new backup",
    )
    revoked = other.wait_push("session_revoked")
    assert revoked["reason"]
    with pytest.raises(ConnectionClosed):
        other.read_frame(timeout=3)

    assert alice.call("fetch_backup")["backup"]
    fresh = clients.connect()
    assert fresh.request("resume", token=other_token)["code"] == "invalid_session"
    assert fresh.request("resume", token=alice.token)["code"] == "invalid_session"
    assert fresh.call("resume", token=reply["token"])["username"] == "alice"
    old = fresh.request("login", username="alice", auth_key=auth_key("alice"))
    assert old["code"] == "invalid_credentials"
    clients.login("alice", "new")


def test_change_password_with_wrong_old_key(clients: Clients) -> None:
    alice = clients.register("alice")
    reply = alice.request(
        "change_password",
        old_auth_key=random_key(),
        new_auth_key=random_key(),
        backup=b"x",
    )
    assert reply["code"] == "invalid_credentials"


def test_login_throttling_grows_and_resets(clients: Clients) -> None:
    clients.register("alice")
    client = clients.connect()
    for _ in range(3):
        reply = client.request("login", username="alice", auth_key=random_key())
        assert reply["code"] == "invalid_credentials"

    limited = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert limited["code"] == "rate_limited"
    assert limited["retry_after"] == 1

    time.sleep(1.1)
    reply = client.request("login", username="alice", auth_key=random_key())
    assert reply["code"] == "invalid_credentials"
    limited = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert limited["code"] == "rate_limited"
    assert limited["retry_after"] == 2

    time.sleep(2.1)
    assert client.call("login", username="alice", auth_key=auth_key("alice"))
    reply = client.request("login", username="alice", auth_key=random_key())
    assert reply["code"] == "invalid_credentials"
    again = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert again["type"] == "ok"


def test_login_throttling_counts_per_address(clients: Clients) -> None:
    clients.register("alice")
    client = clients.connect()
    for name in ("nobody1", "nobody2", "nobody3"):
        reply = client.request("login", username=name, auth_key=random_key())
        assert reply["code"] == "invalid_credentials"
    limited = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert limited["code"] == "rate_limited"


def _admin(server: Server, *args: str) -> int:
    return main(["admin", "--data-dir", str(server.data_dir), *args])


def test_admin_reset_password_and_redeem(
    server: Server, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = clients.register("alice")
    identity_key = alice.call("login", username="alice", auth_key=auth_key("alice"))[
        "identity_key"
    ]
    capsys.readouterr()
    assert _admin(server, "reset-password", "alice") == 0
    output = capsys.readouterr().out
    code = output.split("reset code for alice: ")[1].split()[0]
    assert len(code) == 14
    assert code.count("-") == 2

    assert alice.wait_push("session_revoked", timeout=5)["reason"]
    client = clients.connect()
    reply = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert reply["code"] == "invalid_credentials"

    wrong = client.request(
        "redeem_reset",
        username="alice",
        code="AAAA-AAAA-AAAA",
        new_auth_key=auth_key("alice", "new"),
        identity_key=random_key(),
        backup=b"x",
    )
    assert wrong["code"] == "invalid_reset_code"

    from enctalk.protocol import b64

    redeemed = client.call(
        "redeem_reset",
        username="alice",
        code=code.lower(),
        new_auth_key=auth_key("alice", "new"),
        identity_key=_unb64(identity_key),
        backup=b"new backup",
    )
    assert redeemed["username"] == "alice"
    assert client.call("fetch_backup")["backup"] == b64(b"new backup")
    again = clients.connect().request(
        "redeem_reset",
        username="alice",
        code=code,
        new_auth_key=random_key(),
        identity_key=random_key(),
        backup=b"x",
    )
    assert again["code"] == "invalid_reset_code"
    clients.login("alice", "new")


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text)


def test_admin_disable_closes_and_blocks_then_enable(
    server: Server, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = clients.register("alice")
    assert _admin(server, "disable", "alice") == 0
    assert alice.wait_push("session_revoked", timeout=5)["reason"]
    with pytest.raises(ConnectionClosed):
        alice.read_frame(timeout=3)

    client = clients.connect()
    reply = client.request("login", username="alice", auth_key=auth_key("alice"))
    assert reply["code"] == "account_disabled"
    resumed = client.request("resume", token=alice.token)
    assert resumed["code"] == "account_disabled"

    assert _admin(server, "enable", "alice") == 0
    assert client.call("login", username="alice", auth_key=auth_key("alice"))


def test_admin_list_users_and_unknown_user(
    server: Server, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    clients.register("alice")
    clients.register("bob")
    capsys.readouterr()
    assert _admin(server, "list-users") == 0
    output = capsys.readouterr().out
    assert "alice" in output
    assert "bob" in output
    assert _admin(server, "disable", "nobody") == 1


def test_backup_upload_clears_stale_flag(clients: Clients) -> None:
    alice = clients.register("alice")
    assert alice.call("upload_backup", backup=b"second")["type"] == "ok"
    fetched = alice.call("fetch_backup")
    assert fetched["backup_stale"] is False
    assert _unb64(fetched["backup"]) == b"second"


def test_login_with_unknown_name_does_not_log_the_name(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    clients.register("alice")
    client = clients.connect()
    caplog.set_level("INFO", logger="server.handlers.accounts")
    typed = "hunter2secret"
    reply = client.request("login", username=typed, auth_key=auth_key(typed, "x"))
    wrong = client.request("login", username="alice", auth_key=random_key())
    assert reply["code"] == "invalid_credentials"
    assert wrong["code"] == "invalid_credentials"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert typed not in text
    assert "an unknown user" in text
    assert "user:alice" in text
