import os
import sqlite3
import stat

import pytest

from enctalk.client.errors import ClientError
from enctalk.client.history import HistoryEntry, HistoryStore

KEY = bytes(range(32))


def entry(seq, body, message_id=None, conversation="bob", kind="text", state=None):
    return HistoryEntry(
        conversation=conversation,
        kind=kind,
        direction="in",
        sender=conversation,
        body=body,
        message_id=message_id,
        server_seq=seq,
        server_time=1000 + (seq or 0),
        sent_at=None,
        state=state,
    )


def test_history_orders_by_server_seq_not_arrival(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    store.add(entry(5, "second", "00000000-0000-4000-8000-000000000005"))
    store.add(entry(2, "first", "00000000-0000-4000-8000-000000000002"))
    store.add(entry(None, "pending", "00000000-0000-4000-8000-000000000009"))
    bodies = [item.body for item in store.conversation("bob")]
    assert bodies == ["first", "second", "pending"]


def test_history_dedupes_by_message_id(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    message_id = "00000000-0000-4000-8000-000000000001"
    assert store.add(entry(1, "hello", message_id)) is True
    assert store.add(entry(1, "hello", message_id)) is False
    assert len(store.conversation("bob")) == 1


def test_history_notice_sorts_after_newest_message(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    store.add(entry(3, "a", "00000000-0000-4000-8000-000000000003"))
    store.add(entry(None, "key changed", kind="notice"))
    store.add(entry(4, "b", "00000000-0000-4000-8000-000000000004"))
    bodies = [item.body for item in store.conversation("bob")]
    assert bodies == ["a", "key changed", "b"]


def test_history_update_moves_pending_message(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    pending = "00000000-0000-4000-8000-00000000000a"
    store.add(entry(None, "mine", pending, state="sending"))
    store.add(entry(7, "theirs", "00000000-0000-4000-8000-000000000007"))
    updated = store.update(pending, server_seq=6, state="sent")
    assert updated is not None
    assert updated.state == "sent"
    assert [item.body for item in store.conversation("bob")] == ["mine", "theirs"]


def test_history_conversations_are_separate(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    store.add(entry(1, "to bob", "00000000-0000-4000-8000-000000000001"))
    store.add(entry(2, "to carol", "00000000-0000-4000-8000-000000000002", "carol"))
    assert [item.body for item in store.conversation("carol")] == ["to carol"]
    assert store.conversation("dave") == []


def test_history_file_has_no_plaintext(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path, KEY)
    store.add(entry(1, "secret lunch plans", "00000000-0000-4000-8000-000000000001"))
    store.close()
    raw = path.read_bytes()
    assert b"secret lunch plans" not in raw
    assert b"bob" not in raw
    assert b"00000000-0000-4000-8000-000000000001" not in raw
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_history_wrong_key_reads_nothing(tmp_path):
    path = tmp_path / "h.sqlite3"
    HistoryStore(path, KEY).add(entry(1, "x", "00000000-0000-4000-8000-000000000001"))
    assert HistoryStore(path, bytes(32)).conversation("bob") == []


def test_history_row_moved_to_other_conversation_is_dropped(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path, KEY)
    store.add(entry(1, "for bob", "00000000-0000-4000-8000-000000000001"))
    store.add(entry(2, "for eve", "00000000-0000-4000-8000-000000000002", "eve"))
    store.close()
    db = sqlite3.connect(path)
    eve_index = db.execute(
        "SELECT conversation FROM history WHERE row_id = 2"
    ).fetchone()
    db.execute("UPDATE history SET conversation = ? WHERE row_id = 1", eve_index)
    db.commit()
    db.close()
    bodies = [item.body for item in HistoryStore(path, KEY).conversation("eve")]
    assert bodies == ["for eve"]


def test_history_pages_back_before_server_seq(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3", KEY)
    for seq in range(1, 8):
        store.add(entry(seq, f"m{seq}", f"00000000-0000-4000-8000-00000000000{seq}"))
    store.add(entry(None, "pending", "00000000-0000-4000-8000-000000000009"))
    page = store.conversation("bob", limit=3, before_seq=6)
    assert [item.body for item in page] == ["m3", "m4", "m5"]
    assert store.conversation("bob", before_seq=1) == []


def test_history_random_bytes_file_raises_profile_invalid(tmp_path):
    path = tmp_path / "h.sqlite3"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ClientError) as info:
        HistoryStore(path, KEY)
    assert info.value.code == "profile_invalid"
    assert str(path) in info.value.message
    assert "is damaged" in info.value.message


def test_history_damaged_page_raises_profile_invalid(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path, KEY)
    for seq in range(1, 200):
        store.add(entry(seq, "x" * 200, f"00000000-0000-4000-8000-{seq:012d}"))
    store.close()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = os.urandom(len(data) - page_size)
    path.write_bytes(bytes(data))

    store = HistoryStore(path, KEY)
    try:
        with pytest.raises(ClientError) as info:
            store.conversation("bob")
        assert info.value.code == "profile_invalid"
        assert str(path) in info.value.message
    finally:
        store.close()
