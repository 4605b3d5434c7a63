"""A class set up from a roster: admin import, redeem-setup, class lists, policy."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.integration.conftest import (
    PASSWORD_ALICE,
    PASSWORD_BOB,
    ROOT,
    Cli,
    ServerProcess,
)
from tests.integration.test_cli import events_of

PASSWORD_CARL = "granite meadow lighthouse"
ROSTER = (
    "username,display_name,group,role\n"
    "ada,Ada Lovelace,7B,\n"
    "carl,Carl Gauss,7B,pupil\n"
    "msjones,Ms Jones,,staff\n"
)
_CODE = re.compile(r"^(\S+)\s.*?([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})")


def admin(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "--config",
            str(server.config),
            "admin",
            "--data-dir",
            str(server.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def import_roster(server, tmp_path, text=ROSTER):
    """Import ``text`` as a roster; return the setup codes by username."""
    roster = tmp_path / "roster.csv"
    roster.write_text(text, encoding="utf-8")
    result = admin(server, "import-users", str(roster))
    assert result.returncode == 0, result.stderr
    codes = {}
    for line in result.stdout.splitlines():
        match = _CODE.match(line)
        if match:
            codes[match.group(1)] = match.group(2)
    return codes


def test_cli_pupil_redeems_setup_code_and_messages_teacher(server, tmp_path):
    codes = import_roster(server, tmp_path)
    ada = Cli(tmp_path / "ada", server, PASSWORD_ALICE)
    teacher = Cli(tmp_path / "msjones", server, PASSWORD_BOB)

    pending = ada.run("login", "ada")
    assert pending.returncode == 4
    assert "waiting for its setup code" in pending.stderr

    redeemed = ada.run("redeem-setup", "ada", codes["ada"].lower())
    assert redeemed.returncode == 0, redeemed.stderr
    assert "Account ada is set up on this computer" in redeemed.stdout
    assert codes["ada"] not in redeemed.stdout + redeemed.stderr
    set_up = teacher.run("redeem-setup", "msjones", codes["msjones"])
    assert set_up.returncode == 0, set_up.stderr

    reused = Cli(tmp_path / "ada-again", server, PASSWORD_ALICE)
    again = reused.run("redeem-setup", "ada", codes["ada"])
    assert again.returncode == 4
    assert "invalid, used or expired" in again.stderr
    second_device = reused.run("login", "ada")
    assert second_device.returncode == 0, second_device.stderr

    assert ada.run("add-contact", "msjones").returncode == 0
    sent = ada.run("send", "msjones", "hello Ms Jones")
    assert sent.returncode == 0, sent.stderr
    heard = teacher.run("--timeout", "3", "listen")
    received = events_of(heard, "message_received")
    assert [event["body"] for event in received] == ["hello Ms Jones"]
    assert received[0]["sender"] == "ada"

    contacts = teacher.run("contacts")
    assert contacts.returncode == 0, contacts.stderr
    assert "ada\tonline" in contacts.stdout or "ada\toffline" in contacts.stdout
    assert contacts.stdout.rstrip().endswith("Ada Lovelace")


def test_cli_class_lists_for_staff_only(server, tmp_path):
    codes = import_roster(server, tmp_path)
    teacher = Cli(tmp_path / "msjones", server, PASSWORD_BOB)
    carl = Cli(tmp_path / "carl", server, PASSWORD_CARL)
    assert teacher.run("redeem-setup", "msjones", codes["msjones"]).returncode == 0
    assert carl.run("redeem-setup", "carl", codes["carl"]).returncode == 0

    classes = teacher.run("classes")
    assert classes.returncode == 0, classes.stderr
    assert classes.stdout.splitlines() == ["7B"]
    members = teacher.run("class-members", "7B")
    assert members.returncode == 0, members.stderr
    assert members.stdout.splitlines() == [
        "ada\tAda Lovelace\twaiting for setup",
        "carl\tCarl Gauss\tset up",
    ]
    unknown = teacher.run("class-members", "9Z")
    assert unknown.returncode == 1
    assert "No account belongs to the class '9Z'" in unknown.stderr

    rejected = carl.run("classes")
    assert rejected.returncode == 1
    assert "Only staff accounts may see the class lists." in rejected.stderr


def test_cli_staff_policy_limits_pupils_to_teachers(make_server, tmp_path):
    server = make_server()
    server.stop()
    server.config.write_text('bcrypt_cost = 4\ndirect_messages = "staff"\n')
    server.start()
    codes = import_roster(server, tmp_path)
    ada = Cli(tmp_path / "ada", server, PASSWORD_ALICE)
    carl = Cli(tmp_path / "carl", server, PASSWORD_CARL)
    teacher = Cli(tmp_path / "msjones", server, PASSWORD_BOB)
    for cli, name in ((ada, "ada"), (carl, "carl"), (teacher, "msjones")):
        result = cli.run("redeem-setup", name, codes[name])
        assert result.returncode == 0, result.stderr

    rejected = ada.run("add-contact", "carl")
    assert rejected.returncode == 1
    assert "only teachers" in rejected.stderr
    assert ada.run("add-contact", "msjones").returncode == 0
    sent = ada.run("send", "msjones", "may I ask a question?")
    assert sent.returncode == 0, sent.stderr


def test_admin_export_codes_into_a_closed_pipe_prints_no_traceback(server, tmp_path):
    rows = "username,display_name,group,role\n" + "".join(
        f"p{i:04d},Pupil {i},7B,\n" for i in range(1000)
    )
    import_roster(server, tmp_path, rows)
    command = [
        sys.executable,
        str(ROOT / "run_server.py"),
        "--config",
        str(server.config),
        "admin",
        "--data-dir",
        str(server.data_dir),
        "export-codes",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.close()
        _, errors = process.communicate(timeout=60)
    assert b"Traceback" not in errors
    assert b"BrokenPipeError" not in errors


def test_admin_import_hint_names_the_data_directory(server, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,display_name,group,role\nzed,Zed,7B,\n")
    result = admin(server, "import-users", str(roster))
    assert f"admin --data-dir {server.data_dir} export-codes" in result.stdout
