"""The group commands of run_client.py against a real server."""

from __future__ import annotations

import json
import re

from tests.integration.conftest import PASSWORD_ALICE, PASSWORD_BOB, Cli

GROUP_ID = re.compile(r"[0-9a-f]{32}")


def events(result, name):
    lines = [json.loads(line) for line in result.stdout.splitlines() if line]
    return [event for event in lines if event["event"] == name]


def test_cli_teacher_runs_a_group_from_the_command_line(server, tmp_path):
    ada = Cli(tmp_path / "ada", server, PASSWORD_ALICE)
    sam = Cli(tmp_path / "sam", server, PASSWORD_BOB)
    assert ada.run("register", "ada").returncode == 0
    assert sam.run("register", "sam").returncode == 0

    created = ada.run("group-create", "Class 7B")
    assert created.returncode == 0, created.stderr
    group_id = created.stdout.strip().splitlines()[-1]
    assert GROUP_ID.fullmatch(group_id)

    added = ada.run("group-add", group_id, "sam")
    assert added.returncode == 0, added.stderr
    sent = ada.run("group-send", group_id, "Open your books")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("Sent (message ")

    heard = sam.run("--timeout", "3", "listen")
    received = events(heard, "message_received")
    assert [event["body"] for event in received] == ["Open your books"]
    assert received[0]["group"] == group_id
    assert received[0]["conversation"] == "#" + group_id

    members = ada.run("group-members", group_id).stdout.splitlines()
    assert members[0].startswith("ada\towner")
    assert members[1].startswith("sam\tmember")
    assert "Class 7B" in sam.run("groups").stdout

    assert ada.run("group-mute", group_id, "sam").returncode == 0
    refused = sam.run("group-send", group_id, "hello?")
    assert refused.returncode == 1
    assert "muted you" in refused.stderr
    assert ada.run("group-unmute", group_id, "sam").returncode == 0
    assert ada.run("group-readonly", group_id, "on").returncode == 0
    refused = sam.run("group-send", group_id, "hello?")
    assert "read-only" in refused.stderr

    history = sam.run("history", "#" + group_id).stdout
    assert "* ada added you" in history
    assert "ada: Open your books" in history
    assert "* ada made the group read-only" in history


def test_cli_group_commands_report_bad_ids_and_permissions(server, tmp_path):
    ada = Cli(tmp_path / "ada", server, PASSWORD_ALICE)
    sam = Cli(tmp_path / "sam", server, PASSWORD_BOB)
    assert ada.run("register", "ada").returncode == 0
    assert sam.run("register", "sam").returncode == 0
    group_id = ada.run("group-create", "Club").stdout.strip().splitlines()[-1]
    assert ada.run("group-add", group_id, "sam").returncode == 0

    bad = ada.run("group-send", "not-a-group", "x")
    assert bad.returncode == 1
    assert "is not a group id" in bad.stderr
    unknown = ada.run("group-send", "0" * 32, "x")
    assert "knows no group" in unknown.stderr
    nobody = ada.run("group-add", group_id, "nobody")
    assert nobody.returncode == 1
    assert "nobody" in nobody.stderr
    not_moderator = sam.run("group-remove", group_id, "ada")
    assert not_moderator.returncode == 1
    assert "not a moderator" in not_moderator.stderr
    owner_leaves = ada.run("group-leave", group_id)
    assert "owner cannot leave" in owner_leaves.stderr
    assert "Traceback" not in owner_leaves.stderr


def test_cli_group_add_tries_each_name_once_and_reports_failures(server, tmp_path):
    ada = Cli(tmp_path / "ada", server, PASSWORD_ALICE)
    sam = Cli(tmp_path / "sam", server, PASSWORD_BOB)
    assert ada.run("register", "ada").returncode == 0
    assert sam.run("register", "sam").returncode == 0
    group_id = ada.run("group-create", "Club").stdout.strip().splitlines()[-1]

    result = ada.run("group-add", group_id, "sam", "sam", "nobody")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["Added sam."]
    assert result.stderr.count("error: ") == 1
    assert "error: nobody:" in result.stderr
    listing = ada.run("groups").stdout
    assert "\t2 members" in listing
