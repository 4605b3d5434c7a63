"""Which group actions the views offer, and the sentences for group states."""

from __future__ import annotations

import pytest

from enctalk.client.errors import ClientError
from enctalk.client.history import HistoryEntry
from enctalk.ui import group_rules
from enctalk.ui.class_picker import (
    ClassAdded,
    describe_class_added,
    describe_class_failed,
)
from enctalk.ui.group_dialogs import describe_results, name_problem
from enctalk.ui.group_rules import MemberActions
from enctalk.ui.viewmodel import GroupRow

GROUP_ID = "0123456789abcdef0123456789abcdef"


def member(name, role="member", muted=False, display_name=None, online=True):
    return {
        "username": name,
        "display_name": display_name or name,
        "role": role,
        "muted": muted,
        "online": online,
    }


def message(sender, kind="text", state=None, server_seq=7, direction="in"):
    return HistoryEntry(
        conversation="#" + GROUP_ID,
        kind=kind,
        direction=direction,
        sender=sender,
        body="hello",
        message_id="10000000-0000-4000-8000-000000000001",
        server_seq=server_seq,
        server_time=1_700_000_000_000,
        sent_at=1_700_000_000_000,
        state=state,
    )


@pytest.mark.parametrize(
    ("my_role", "target", "expected"),
    [
        ("owner", member("kim"), MemberActions(True, True, False, True, False)),
        (
            "owner",
            member("kim", "moderator"),
            MemberActions(True, False, False, False, True),
        ),
        ("owner", member("kim", muted=True), MemberActions(True, False, True, True)),
        ("moderator", member("kim"), MemberActions(True, True, False, False, False)),
        ("moderator", member("ada", "moderator"), MemberActions()),
        ("moderator", member("teacher", "owner"), MemberActions()),
        ("member", member("kim"), MemberActions()),
        (None, member("kim"), MemberActions()),
        ("owner", member("sam", "owner"), MemberActions()),
    ],
)
def test_member_actions_follow_roles(my_role, target, expected):
    assert group_rules.member_actions(my_role, "sam", target) == expected


def test_member_actions_none_on_self():
    assert not group_rules.member_actions("moderator", "sam", member("sam")).any


def test_owner_cannot_leave_but_member_can():
    assert not group_rules.may_leave(GroupRow(GROUP_ID, role="owner"))
    assert group_rules.may_leave(GroupRow(GROUP_ID, role="member"))
    assert group_rules.may_leave(GroupRow(GROUP_ID, role="moderator"))
    assert not group_rules.may_leave(GroupRow(GROUP_ID, role=None))


def test_member_deletes_only_own_messages():
    row = GroupRow(GROUP_ID, role="member")
    assert group_rules.may_delete(row, "sam", message("sam", direction="out"))
    assert not group_rules.may_delete(row, "sam", message("kim"))


def test_muted_member_may_delete_own_message():
    row = GroupRow(GROUP_ID, role="member", muted=True)
    assert group_rules.may_delete(row, "sam", message("sam", direction="out"))


def test_moderator_deletes_any_message():
    row = GroupRow(GROUP_ID, role="moderator")
    assert group_rules.may_delete(row, "sam", message("kim"))
    assert group_rules.may_delete(row, "sam", message("kim", kind="audio"))


def test_delete_excludes_lines_and_unstored_messages():
    row = GroupRow(GROUP_ID, role="owner")
    assert not group_rules.may_delete(row, "sam", message("kim", kind="system"))
    assert not group_rules.may_delete(row, "sam", message("kim", kind="notice"))
    unsent = message("sam", state="sending", server_seq=None, direction="out")
    assert not group_rules.may_delete(row, "sam", unsent)
    assert group_rules.may_delete(row, "sam", unsent, state="sent")
    failed = message("sam", state="failed", server_seq=None, direction="out")
    assert not group_rules.may_delete(row, "sam", failed)


def test_former_member_deletes_nothing():
    row = GroupRow(GROUP_ID, role=None)
    assert not group_rules.may_delete(row, "sam", message("sam", direction="out"))


def test_post_refusal_names_each_state():
    assert group_rules.post_refusal(GroupRow(GROUP_ID, role="member")) is None
    muted = GroupRow(GROUP_ID, role="member", muted=True)
    assert group_rules.post_refusal(muted) == (
        "A moderator has muted you in this group."
    )
    read_only = GroupRow(GROUP_ID, role="member", read_only=True)
    assert "read-only" in (group_rules.post_refusal(read_only) or "")
    moderator = GroupRow(GROUP_ID, role="moderator", read_only=True)
    assert group_rules.post_refusal(moderator) is None
    removed = GroupRow(GROUP_ID, role=None, left_reason="kim removed you.")
    assert group_rules.post_refusal(removed) == "kim removed you."
    unknown = GroupRow(GROUP_ID, role=None)
    assert group_rules.post_refusal(unknown) == (
        "You are no longer a member of this group."
    )


def test_banner_says_history_kept_after_removal():
    banner = group_rules.banner_text(GroupRow(GROUP_ID, role=None)) or ""
    assert "history stays on this computer" in banner
    assert group_rules.banner_text(GroupRow(GROUP_ID, role="member")) is None


def test_subtitle_lists_count_role_and_modes():
    row = GroupRow(GROUP_ID, role="owner", read_only=True, members=12)
    assert group_rules.subtitle(row) == "12 members · you are the owner · read-only"
    single = GroupRow(GROUP_ID, role="member", muted=True, members=1)
    assert group_rules.subtitle(single) == "1 member · you are muted"


def test_member_label_shows_role_and_mute():
    assert group_rules.member_label(member("kim")) == ""
    assert group_rules.member_label(member("kim", muted=True)) == "muted"
    assert group_rules.member_label(member("ada", "moderator")) == "moderator"
    assert group_rules.member_label(member("teacher", "owner")) == "owner"


def test_parse_usernames_splits_and_canonicalises():
    valid, invalid = group_rules.parse_usernames(" Kim, sam;ada  kim\nbo ")
    assert valid == ["kim", "sam", "ada"]
    assert invalid == ["bo"]


def test_parse_usernames_rejects_other_characters():
    valid, invalid = group_rules.parse_usernames("jo@school ok.name")
    assert valid == ["ok.name"]
    assert invalid == ["jo@school"]


def test_parse_usernames_empty_text():
    assert group_rules.parse_usernames("  ") == ([], [])


def test_group_name_problem():
    assert name_problem("") == "Type a name for the group."
    assert name_problem("Class 7b") is None
    assert "at most 64 characters" in (name_problem("x" * 65) or "")


def test_add_results_list_failures_after_added():
    text = describe_results([("kim", None), ("jo", "There is no user with that name.")])
    assert text == "Added kim.\nNot added jo: There is no user with that name."


def test_member_name_prefers_display_name():
    assert group_rules.member_name(member("pupil04", display_name="Pupil 04")) == (
        "Pupil 04"
    )
    assert group_rules.member_name(member("kim", display_name="")) == "kim"
    assert group_rules.member_name({"username": "jo", "role": "member"}) == "jo"


def test_sorted_members_by_role_then_display_name():
    members = [
        member("pupil02", display_name="Pupil Two"),
        member("bob", "moderator", display_name="Zed Moderator"),
        member("pupil01", display_name="pupil one"),
        member("ada", "owner", display_name="Ms Ada"),
        member("pupil03", display_name="Pupil Three"),
        member("amy", "moderator", display_name="Amy"),
    ]
    order = [item["username"] for item in group_rules.sorted_members(members)]
    assert order == ["ada", "amy", "bob", "pupil01", "pupil03", "pupil02"]


def test_sorted_members_ties_broken_by_username():
    members = [
        member("kim2", display_name="Kim"),
        member("kim1", display_name="Kim"),
    ]
    order = [item["username"] for item in group_rules.sorted_members(members)]
    assert order == ["kim1", "kim2"]


def test_member_details_show_username_and_presence():
    pupil = member("pupil04", display_name="Pupil 04", online=False)
    assert group_rules.member_details(pupil) == "username pupil04 · offline"
    muted = member("kim", muted=True)
    assert group_rules.member_details(muted) == "username kim · online · muted"


def test_class_added_counts_members_and_pending():
    result = ClassAdded("7B", ("pupil01", "pupil02", "pupil03"), ("pupil03",))
    assert describe_class_added(result) == (
        "Added 3 members from class 7B. 1 of them has not used their setup "
        "code yet and gets only the messages sent after that."
    )


def test_class_added_singular_and_several_pending():
    one = ClassAdded("7B", ("pupil01",), ())
    assert describe_class_added(one) == "Added 1 member from class 7B."
    two = ClassAdded("7B", ("pupil01", "pupil02"), ("pupil01", "pupil02"))
    assert "2 of them have not used their setup codes yet" in (
        describe_class_added(two)
    )


def test_class_added_nobody_new():
    result = ClassAdded("7B", (), ())
    assert describe_class_added(result) == (
        "Everyone in class 7B is in the group already."
    )


def test_class_failed_says_what_stays():
    error = ClientError("unknown_contact", "The server has no class '9Z'.")
    text = describe_class_failed("9Z", error)
    assert text.startswith("Adding class 9Z failed: The server has no class '9Z'.")
    assert "adding the class again adds the rest" in text


def test_member_details_say_pending_not_presence():
    pupil = {"username": "pupil04", "role": "member", "pending": True}
    assert group_rules.member_details(pupil) == "username pupil04 · waiting for setup"
    pupil["muted"] = True
    expected = "username pupil04 · waiting for setup · muted"
    assert group_rules.member_details(pupil) == expected


def test_members_title_counts_pending():
    members = [
        {"username": "msada", "role": "owner"},
        {"username": "pupil01", "role": "member", "pending": False},
        {"username": "pupil02", "role": "member", "pending": True},
    ]
    assert group_rules.members_title(members) == "Members (3, 1 not set up)"
    assert group_rules.members_title(members[:2]) == "Members (2)"
    assert group_rules.count_pending(members) == 1


def test_pending_notice_singular_and_plural():
    one = group_rules.pending_notice(1)
    assert one.startswith("1 member has not set up their account yet.")
    several = group_rules.pending_notice(3)
    assert several.startswith("3 members have not set up their accounts yet.")
    assert several.endswith("They get only the messages sent after they do.")


def test_member_details_presence_unknown():
    pupil = {"username": "pupil04", "role": "member", "online": True}
    details = group_rules.member_details(pupil, presence_known=False)
    assert details == "username pupil04 · presence unknown"
    pupil["pending"] = True
    details = group_rules.member_details(pupil, presence_known=False)
    assert details == "username pupil04 · waiting for setup"
