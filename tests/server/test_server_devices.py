"""Devices, prekey bundles and contacts with presence, against a live server."""

from __future__ import annotations

import socket
import struct

import pytest
from conftest import Clients
from server_wire import TEST_AIK, device_fields, random_key, signed_prekey_fields

from enctalk.crypto.keys import AccountIdentity, sign_device_key, sign_prekey
from server.handlers.base import ONE_TIME_PREKEYS_PER_ACCOUNT_DAY


def test_register_device_binds_session(clients: Clients) -> None:
    alice = clients.register("alice")
    assert alice.request("sync", after=0)["code"] == "no_device"
    device_id = alice.call("register_device", **device_fields())["device_id"]
    assert alice.call("sync", after=0)["last"] == 0

    other = clients.login("alice", device_id=device_id)
    assert other.device_id == device_id
    unknown = clients.login("alice", device_id=device_id + 1000)
    assert unknown.device_id is None


def test_fetch_bundles_consumes_one_time_prekeys(clients: Clients) -> None:
    bob = clients.with_device("bob", prekeys=2)
    alice = clients.with_device("alice")
    alice.call("add_contact", username="bob")

    first = alice.call("fetch_bundles", username="bob")
    assert first["username"] == "bob"
    assert [d["device_id"] for d in first["devices"]] == [bob.device_id]
    assert first["devices"][0]["one_time_prekey"]["id"] == 1
    second = alice.call("fetch_bundles", username="BOB")
    assert second["devices"][0]["one_time_prekey"]["id"] == 2
    third = alice.call("fetch_bundles", username="bob")
    assert third["devices"][0]["one_time_prekey"] is None
    assert third["devices"][0]["signed_prekey"]["id"] == 1


def test_fetch_bundles_pushes_prekeys_low(clients: Clients) -> None:
    bob = clients.with_device("bob", prekeys=21)
    alice = clients.with_device("alice")
    alice.call("add_contact", username="bob")
    alice.call("fetch_bundles", username="bob")
    assert not [p for p in bob.pushes if p["type"] == "prekeys_low"]
    alice.call("fetch_bundles", username="bob")
    low = bob.wait_push("prekeys_low")
    assert low["remaining"] == 19

    uploaded = bob.call(
        "upload_prekeys",
        one_time_prekeys=device_fields(prekeys=10, first_id=100)["one_time_prekeys"],
    )
    assert uploaded["one_time_prekeys"] == 29


def test_fetch_bundles_own_account_skips_current_device(clients: Clients) -> None:
    alice = clients.with_device("alice")
    laptop = clients.login("alice")
    laptop_device = laptop.call("register_device", **device_fields())["device_id"]
    own = alice.call("fetch_bundles", username="alice")
    assert [d["device_id"] for d in own["devices"]] == [laptop_device]


def test_fetch_bundles_unknown_user(clients: Clients) -> None:
    alice = clients.with_device("alice")
    assert alice.request("fetch_bundles", username="nobody")["code"] == "user_not_found"


def test_list_and_remove_devices(clients: Clients) -> None:
    alice = clients.with_device("alice")
    laptop = clients.login("alice")
    laptop_device = laptop.call("register_device", **device_fields())["device_id"]

    listed = alice.call("list_devices")["devices"]
    assert [d["device_id"] for d in listed] == [alice.device_id, laptop_device]
    assert [d["current"] for d in listed] == [True, False]
    assert [d["stale"] for d in listed] == [False, False]

    assert alice.call("remove_device", device_id=laptop_device)["type"] == "ok"
    listed = alice.call("list_devices")["devices"]
    assert [d["device_id"] for d in listed] == [alice.device_id]
    missing = alice.request("remove_device", device_id=laptop_device)
    assert missing["code"] == "device_not_found"
    assert laptop.request("sync", after=0)["code"] == "no_device"


def test_contacts_are_mutual(clients: Clients) -> None:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    added = alice.call("add_contact", username="Bob")
    assert added["username"] == "bob"
    assert added["online"] is True
    pushed = bob.wait_push("contact_added")
    assert pushed["username"] == "alice"
    assert pushed["online"] is True

    contacts = bob.call("list_contacts")["contacts"]
    assert [c["username"] for c in contacts] == ["alice"]
    assert contacts[0]["online"] is True


def test_add_contact_errors(clients: Clients) -> None:
    alice = clients.with_device("alice")
    assert alice.request("add_contact", username="alice")["code"] == "invalid_username"
    assert alice.request("add_contact", username="nobody")["code"] == "user_not_found"


def test_presence_follows_connections(clients: Clients) -> None:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")

    second = clients.login("bob")
    bob.close()
    second.call("ping")
    # Bob is still online through the second connection.
    alice.call("ping")
    assert not [p for p in alice.pushes if p["type"] == "presence"]

    second.close()
    offline = alice.wait_push("presence")
    assert offline == {"type": "presence", "username": "bob", "online": False}
    clients.login("bob")
    online = alice.wait_push("presence")
    assert online["online"] is True


def test_presence_after_tcp_reset(clients: Clients) -> None:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")

    raw = bob.sock
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    offline = alice.wait_push("presence")
    assert offline["online"] is False


def test_logout_sets_presence_offline(clients: Clients) -> None:
    alice = clients.with_device("alice")
    bob = clients.with_device("bob")
    alice.call("add_contact", username="bob")
    bob.call("logout")
    assert alice.wait_push("presence")["online"] is False


def test_upload_prekeys_replaces_signed_prekey(clients: Clients) -> None:
    bob = clients.with_device("bob")
    alice = clients.with_device("alice")
    alice.call("add_contact", username="bob")
    new_key = random_key()
    bob.call(
        "upload_prekeys",
        signed_prekey={
            "id": 7,
            "key": new_key,
            "signature": sign_prekey(TEST_AIK, 7, new_key),
        },
        one_time_prekeys=[],
    )
    bundle = alice.call("fetch_bundles", username="bob")["devices"][0]
    assert bundle["signed_prekey"]["id"] == 7


@pytest.mark.parametrize(
    "broken",
    ["device_signature", "prekey_signature", "prekey_id", "other_aik"],
)
def test_register_device_rejects_bad_signature(clients: Clients, broken: str) -> None:
    alice = clients.register("alice")
    aik = AccountIdentity.generate() if broken == "other_aik" else TEST_AIK
    fields = device_fields(aik=aik)
    if broken == "device_signature":
        fields["signature"] = sign_device_key(TEST_AIK, random_key())
    elif broken == "prekey_signature":
        fields["signed_prekey"]["signature"] = bytes(64)
    elif broken == "prekey_id":
        # A signature over the same key under another id must not pass.
        fields["signed_prekey"]["id"] = 2

    reply = alice.request("register_device", **fields)
    assert reply["type"] == "error"
    assert reply["code"] == "invalid_signature"
    assert alice.call("list_devices")["devices"] == []
    assert alice.request("sync", after=0)["code"] == "no_device"


def test_upload_prekeys_rejects_bad_signature(clients: Clients) -> None:
    bob = clients.with_device("bob")
    alice = clients.with_device("alice")
    alice.call("add_contact", username="bob")
    forged = signed_prekey_fields(9, AccountIdentity.generate())
    reply = bob.request("upload_prekeys", signed_prekey=forged, one_time_prekeys=[])
    assert reply["code"] == "invalid_signature"

    bundle = alice.call("fetch_bundles", username="bob")["devices"][0]
    assert bundle["signed_prekey"]["id"] == 1
    assert bob.call("ping")["type"] == "ok"


def test_fetch_bundles_of_a_stranger_is_refused(clients: Clients) -> None:
    bob = clients.with_device("bob", prekeys=2)
    mallory = clients.with_device("mallory")
    refused = mallory.request("fetch_bundles", username="bob")
    assert refused["code"] == "not_a_contact"
    listed = mallory.call("fetch_bundle_set", usernames=["bob", "mallory"])
    assert [user["username"] for user in listed["users"]] == ["mallory"]
    bob.call("add_contact", username="mallory")
    first = mallory.call("fetch_bundles", username="bob")["devices"][0]
    assert first["one_time_prekey"]["id"] == 1


def test_one_account_takes_few_one_time_prekeys_of_a_device_per_day(
    clients: Clients,
) -> None:
    bob = clients.with_device("bob", prekeys=20)
    alice = clients.with_device("alice")
    carol = clients.with_device("carol")
    alice.call("add_contact", username="bob")
    carol.call("add_contact", username="bob")

    taken = [
        alice.call("fetch_bundles", username="bob")["devices"][0]["one_time_prekey"]
        for _ in range(ONE_TIME_PREKEYS_PER_ACCOUNT_DAY + 2)
    ]
    assert all(key is not None for key in taken[:ONE_TIME_PREKEYS_PER_ACCOUNT_DAY])
    assert taken[ONE_TIME_PREKEYS_PER_ACCOUNT_DAY:] == [None, None]
    other = carol.call("fetch_bundles", username="bob")["devices"][0]
    assert other["one_time_prekey"] is not None
    assert bob.device_id == other["device_id"]
