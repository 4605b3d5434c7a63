"""Roster import, setup codes and their sheet, with SQLite on disk.

The admin commands run in-process through ``server.main.main``; the
tests that redeem a code talk to a real server on 127.0.0.1.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from conftest import Clients
from server_wire import DEFAULT_PASSWORD, WireClient, auth_key, identity_key

from server.app import Server
from server.main import main
from server.store import DATABASE_FILE_NAME, Store

CODE = re.compile(r"\b[2-9A-HJKMNP-TV-Z]{4}(?:-[2-9A-HJKMNP-TV-Z]{4}){3}\b")
HEADER = "username,display_name,group,role\n"


def _admin(data_dir: Path, *args: str) -> int:
    return main(["admin", "--data-dir", str(data_dir), *args])


def _write(tmp_path: Path, text: str, name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _class_of_thirty() -> str:
    names = ["Zoë Müller", "O'Brien, Seán", "Li Wei"]
    names += [f"Pupil {number:02d}" for number in range(4, 30)]
    rows = [HEADER]
    for number, name in enumerate(names, start=1):
        quoted = f'"{name}"' if "," in name else name
        rows.append(f"pupil{number:02d},{quoted},7B,\n")
    rows.append("msjones,Ms Jones,,staff\n")
    return "".join(rows)


def _codes_by_user(output: str) -> dict[str, str]:
    codes = {}
    for line in output.splitlines():
        found = CODE.search(line)
        if found:
            codes[line.split()[0]] = found.group(0)
    return codes


def _users(data_dir: Path) -> dict[str, object]:
    store = Store.open_in(data_dir)
    try:
        return {user.username: user for user, _, _ in store.list_users()}
    finally:
        store.close()


def _redeem(
    client: WireClient, name: str, code: str, password: str = DEFAULT_PASSWORD
) -> dict:
    return client.request(
        "redeem_reset",
        username=name,
        code=code,
        new_auth_key=auth_key(name.lower(), password),
        identity_key=identity_key(),
        backup=b"backup of " + name.encode(),
    )


@pytest.fixture
def database(data_dir: Path) -> Path:
    """An empty server database in ``data_dir``, with no server running."""
    data_dir.mkdir(parents=True)
    Store.open_in(data_dir).close()
    return data_dir


def test_import_users_creates_class_of_thirty(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(tmp_path, _class_of_thirty())
    assert _admin(database, "import-users", str(roster)) == 0
    output = capsys.readouterr().out

    codes = _codes_by_user(output)
    assert len(codes) == 30
    assert len(set(codes.values())) == 30
    assert "Created 30 accounts waiting for setup." in output
    assert "O'Brien, Seán" in output

    users = _users(database)
    assert sorted(users) == sorted(codes)
    pupil = users["pupil01"]
    assert pupil.display_name == "Zoë Müller"
    assert pupil.class_label == "7B"
    assert pupil.pending_setup is True
    assert pupil.staff is False
    assert pupil.auth_hash == b""
    assert pupil.identity_key == b""
    teacher = users["msjones"]
    assert teacher.staff is True
    assert teacher.class_label == ""


def test_import_users_reports_every_bad_row(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, HEADER + "taken,Taken Name,,\n", "first.csv")
    assert _admin(database, "import-users", str(tmp_path / "first.csv")) == 0
    store = Store.open_in(database)
    user = store.user_by_name("taken")
    assert user is not None
    # The account is set up, so its name is no longer free for a roster.
    store.db.execute("UPDATE users SET pending_setup = 0 WHERE id = ?", (user.id,))
    store.close()
    capsys.readouterr()

    roster = _write(
        tmp_path,
        HEADER
        + "good1,Good One,7B,\n"  # line 2
        + "ab,Too Short,7B,\n"  # line 3
        + "empty.name,,7B,\n"  # line 4
        + "long.name,"
        + "x" * 65
        + ",7B,\n"  # line 5
        + "tab.name,Tab\there,7B,\n"  # line 6
        + "role.name,Role Name,7B,teacher\n"  # line 7
        + "few.fields,Few Fields\n"  # line 8
        + "good1,Again,7B,\n"  # line 9
        + "taken,Someone Else,7B,\n"  # line 10
        + "group.name,Group Name,"
        + "G" * 33
        + ",\n"  # line 11
        + "bidi.name,Evil\u202egnp,7B,\n"  # line 12
        + ",No Username,7B,\n"  # line 13
        + "good2,Good Two,7B,staff\n",  # line 14
    )
    assert _admin(database, "import-users", str(roster)) == 1
    captured = capsys.readouterr()
    errors = captured.err
    assert "11 rows are invalid" in errors
    assert "nothing was imported" in errors
    assert "line 3: the username 'ab' is invalid" in errors
    assert "line 4: the display name is empty" in errors
    assert "line 5: the display name has 65 characters" in errors
    assert "line 6: the display name contains the control character U+0009" in errors
    assert "line 7: the role 'teacher' is not one of pupil, staff" in errors
    assert "line 8: the row has 2 fields, but the header has 4 columns" in errors
    assert "line 9: the username good1 is also on line 2" in errors
    assert "line 10: the username taken is taken by an account" in errors
    assert "line 11: the group 'GGG" in errors
    assert "line 12: the display name contains the control character U+202E" in errors
    assert "line 13: the username is empty" in errors
    assert "line 2:" not in errors
    assert "line 14:" not in errors
    assert CODE.search(captured.out) is None
    assert sorted(_users(database)) == ["taken"]


def test_import_users_accepts_bom_crlf_and_quotes(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "\ufeffUsername, Display Name ,Group\r\n"
        '"ada","Lovelace, Ada",7B\r\n'
        '"grace","Grace ""Amazing"" Hopper",7B\r\n'
        "\r\n"
        ",,\r\n"
        "alan,Alan Turing,\r\n"
    )
    roster = tmp_path / "excel.csv"
    roster.write_bytes(text.encode("utf-8"))
    assert _admin(database, "import-users", str(roster)) == 0
    output = capsys.readouterr().out
    assert len(_codes_by_user(output)) == 3

    users = _users(database)
    assert users["ada"].display_name == "Lovelace, Ada"
    assert users["grace"].display_name == 'Grace "Amazing" Hopper'
    assert users["alan"].class_label == ""
    assert users["alan"].staff is False


def test_import_users_counts_lines_of_quoted_newlines(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(
        tmp_path,
        HEADER + 'ada,"Ada\nLovelace",7B,\n' + "xy,Short,7B,\n",
    )
    assert _admin(database, "import-users", str(roster)) == 1
    errors = capsys.readouterr().err
    assert "line 2: the display name contains the control character U+000A" in errors
    assert "line 4: the username 'xy' is invalid" in errors


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no header row"),
        (b"username,display_name\n", "no rows after the header"),
        (b"username;display_name\nada;Ada\n", "not semicolons"),
        (b"username,name\nada,Ada\n", "unknown column 'name'"),
        (b"username,group\nada,7B\n", "no column display_name"),
        (b"username,display_name,username\nada,Ada,ada\n", "appears twice"),
        (b"username,display_name\nada,Ada\nbob,B\xe9b\n", "line 3: not valid UTF-8"),
    ],
)
def test_import_users_rejects_unusable_file(
    database: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_bytes(content)
    assert _admin(database, "import-users", str(roster)) == 1
    errors = capsys.readouterr().err
    assert message in errors
    assert "nothing was imported" in errors
    assert _users(database) == {}


def test_import_users_missing_file_is_error(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _admin(database, "import-users", str(tmp_path / "absent.csv")) == 1
    assert "cannot read" in capsys.readouterr().err


def test_import_users_reimport_keeps_codes(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\nbob,Bob,7B,\n")
    assert _admin(database, "import-users", str(roster)) == 0
    first = _codes_by_user(capsys.readouterr().out)

    changed = _write(tmp_path, HEADER + "ada,Ada L.,7C,\nbob,Bob,7B,\ncyd,Cyd,7B,\n")
    assert _admin(database, "import-users", str(changed)) == 0
    output = capsys.readouterr().out
    second = _codes_by_user(output)
    assert second["ada"] == first["ada"]
    assert second["bob"] == first["bob"]
    assert "cyd" in second
    assert "was pending, details updated, code kept" in output
    assert "was pending, code kept" in output
    assert "Created 1 account waiting for setup." in output
    assert "kept their codes" in output
    users = _users(database)
    assert users["ada"].display_name == "Ada L."
    assert users["ada"].class_label == "7C"


def test_import_users_new_codes_replace_old(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    old = _codes_by_user(capsys.readouterr().out)["ada"]
    assert _admin(server.data_dir, "import-users", "--new-codes", str(roster)) == 0
    output = capsys.readouterr().out
    new = _codes_by_user(output)["ada"]
    assert new != old
    assert "was pending, new code" in output

    client = clients.connect()
    assert _redeem(client, "ada", old)["code"] == "invalid_reset_code"
    assert _redeem(client, "ada", new)["type"] == "ok"


def test_export_codes_prints_sheet(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(
        tmp_path,
        HEADER + "ada,Ada Lovelace,7B,\nbob,Bob Smith,7C,\nmsjones,Ms Jones,,staff\n",
    )
    assert _admin(database, "import-users", str(roster)) == 0
    codes = _codes_by_user(capsys.readouterr().out)

    assert _admin(database, "export-codes", "--server", "10.0.0.5:5443") == 0
    sheet = capsys.readouterr().out
    assert "EncTalk account for Ada Lovelace (7B)" in sheet
    assert "EncTalk account for Ms Jones\n" in sheet
    assert "  Username:    ada\n" in sheet
    assert "  Server:      10.0.0.5:5443\n" in sheet
    assert f"  Setup code:  {codes['ada']}" in sheet
    assert f"  Setup code:  {codes['bob']}" in sheet
    assert sheet.count("choose 'I have a setup code'") == 3

    assert _admin(database, "export-codes", "--group", "7B") == 0
    group_sheet = capsys.readouterr().out
    assert codes["ada"] in group_sheet
    assert codes["bob"] not in group_sheet
    assert codes["msjones"] not in group_sheet
    assert "Server:" not in group_sheet

    assert _admin(database, "export-codes", "--group", "9Z") == 1
    assert "there is no group '9Z'; the groups are: 7B, 7C" in capsys.readouterr().err


def test_export_codes_leaves_out_expired_codes(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\nbob,Bob,7B,\n")
    assert _admin(database, "import-users", str(roster)) == 0
    codes = _codes_by_user(capsys.readouterr().out)
    with sqlite3.connect(database / DATABASE_FILE_NAME) as db:
        db.execute(
            "UPDATE setup_codes SET expires = 0 WHERE user_id ="
            " (SELECT id FROM users WHERE username = 'bob')"
        )
    db.close()

    assert _admin(database, "export-codes") == 0
    captured = capsys.readouterr()
    assert codes["ada"] in captured.out
    assert codes["bob"] not in captured.out
    assert "1 setup codes have expired" in captured.err
    assert "(bob)" in captured.err


def test_export_codes_uses_configured_address(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(database, "import-users", str(roster)) == 0
    capsys.readouterr()
    config = tmp_path / "server.toml"
    config.write_text('host = "192.168.1.10"\nport = 5443\n')
    assert (
        main(
            [
                "--config",
                str(config),
                "admin",
                "--data-dir",
                str(database),
                "export-codes",
            ]
        )
        == 0
    )
    assert "  Server:      192.168.1.10:5443\n" in capsys.readouterr().out


def test_export_codes_without_pending_accounts(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _admin(database, "export-codes") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No account is waiting for setup." in captured.err


def test_pending_login_gets_setup_required(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    client = clients.connect()
    # More attempts than login_free_failures: none is counted as a failure.
    for _ in range(5):
        reply = client.request("login", username="ada", auth_key=auth_key("ada"))
        assert reply["code"] == "setup_required"
        assert "setup code" in reply["message"]
    unknown = client.request("login", username="nobody", auth_key=auth_key("nobody"))
    assert unknown["code"] == "invalid_credentials"


def test_redeem_setup_code_then_log_in(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada Lovelace,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    code = _codes_by_user(capsys.readouterr().out)["ada"]

    client = clients.connect()
    typed = code.lower().replace("-", " ")
    reply = _redeem(client, "ADA", typed)
    assert reply["type"] == "ok", reply
    assert reply["username"] == "ada"
    assert client.call("list_contacts")["contacts"] == []

    again = clients.connect()
    assert _redeem(again, "ada", code)["code"] == "invalid_reset_code"
    login = again.call("login", username="ada", auth_key=auth_key("ada"))
    assert login["identity_key"]

    user = _users(server.data_dir)["ada"]
    assert user.pending_setup is False
    assert user.display_name == "Ada Lovelace"
    assert _admin(server.data_dir, "export-codes") == 0
    assert code not in capsys.readouterr().out


def test_wrong_setup_code_is_throttled(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    code = _codes_by_user(capsys.readouterr().out)["ada"]

    client = clients.connect()
    for _ in range(3):
        wrong = _redeem(client, "ada", "2222-3333-4444-5555")
        assert wrong["code"] == "invalid_reset_code"
    throttled = _redeem(client, "ada", code)
    assert throttled["code"] == "rate_limited"
    assert throttled["retry_after"] >= 1
    assert _users(server.data_dir)["ada"].pending_setup is True


def test_expired_setup_code_is_rejected(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    code = _codes_by_user(capsys.readouterr().out)["ada"]
    with sqlite3.connect(server.data_dir / DATABASE_FILE_NAME) as db:
        db.execute("UPDATE setup_codes SET expires = 0")
    db.close()

    reply = _redeem(clients.connect(), "ada", code)
    assert reply["code"] == "invalid_reset_code"
    assert "expired" in reply["message"]


def test_reset_password_of_pending_account_gives_setup_code(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    old = _codes_by_user(capsys.readouterr().out)["ada"]

    assert _admin(server.data_dir, "reset-password", "ada") == 0
    output = capsys.readouterr().out
    assert "ada has not redeemed the setup code yet" in output
    new = CODE.search(output).group(0)
    assert new != old

    client = clients.connect()
    assert _redeem(client, "ada", old)["code"] == "invalid_reset_code"
    assert _redeem(client, "ada", new)["type"] == "ok"


def test_pending_account_cannot_be_added_or_fetched(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    bob = clients.register("bob")
    added = bob.request("add_contact", username="ada")
    assert added["code"] == "setup_required"
    assert "ada has not redeemed the setup code" in added["message"]
    fetched = bob.request("fetch_bundles", username="ada")
    assert fetched["code"] == "setup_required"


def test_set_staff_and_display_name_commands(
    server: Server,
    clients: Clients,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients.register("alice")
    bob = clients.register("bob")
    assert _admin(server.data_dir, "set-staff", "Alice") == 0
    assert (
        _admin(server.data_dir, "set-display-name", "alice", " Mrs Alice Smith ") == 0
    )
    assert "alice is now shown as Mrs Alice Smith" in capsys.readouterr().out
    users = _users(server.data_dir)
    assert users["alice"].staff is True
    assert users["alice"].display_name == "Mrs Alice Smith"
    assert users["bob"].display_name == "bob"

    added = bob.call("add_contact", username="alice")
    assert added["display_name"] == "Mrs Alice Smith"
    assert _admin(server.data_dir, "list-users") == 0
    listing = capsys.readouterr().out
    assert re.search(r"alice\s+Mrs Alice Smith\s.*staff", listing)

    assert _admin(server.data_dir, "unset-staff", "alice") == 0
    assert _users(server.data_dir)["alice"].staff is False
    assert _admin(server.data_dir, "set-display-name", "alice", "bad\x07name") == 1
    assert "control character U+0007" in capsys.readouterr().err
    assert _admin(server.data_dir, "set-display-name", "alice", "") == 1
    assert _admin(server.data_dir, "set-staff", "nobody") == 1
    assert "there is no user nobody" in capsys.readouterr().err


def test_pending_username_register_points_to_setup_code(
    server: Server, clients: Clients, tmp_path: Path
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    reply = clients.connect().request(
        "register",
        username="ada",
        auth_key=auth_key("ada"),
        identity_key=identity_key(),
        backup=b"backup",
    )
    assert reply["code"] == "setup_required"
    assert "I have a setup code" in reply["message"]
    assert _users(server.data_dir)["ada"].pending_setup is True


def test_disabled_pending_account_cannot_redeem(
    server: Server,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = _write(tmp_path, HEADER + "ada,Ada,7B,\n")
    assert _admin(server.data_dir, "import-users", str(roster)) == 0
    code = _codes_by_user(capsys.readouterr().out)["ada"]
    assert _admin(server.data_dir, "disable", "ada") == 0

    reply = _redeem(clients.connect(), "ada", code)
    assert reply["code"] == "account_disabled"
    assert _admin(server.data_dir, "enable", "ada") == 0
    assert _redeem(clients.connect(), "ada", code)["type"] == "ok"
