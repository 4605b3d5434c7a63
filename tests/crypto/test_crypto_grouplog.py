"""Group operations: signatures, the hash chain and the role rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enctalk.crypto.grouplog import (
    ADD,
    CREATE,
    DELETE,
    LEAVE,
    MUTE,
    READ_ONLY,
    REMOVE,
    SET_ROLE,
    GroupOpError,
    GroupState,
    describe_op,
    sign_op,
    verify_op,
)
from enctalk.crypto.keys import AccountIdentity

GROUP = "0123456789abcdef0123456789abcdef"
MESSAGE = "00000000-0000-4000-8000-000000000001"


class Log:
    """A group built op by op, each signed by its actor's key."""

    def __init__(self) -> None:
        self.keys = {
            name: AccountIdentity.generate() for name in ("ada", "mod", "sam", "kim")
        }
        self.state = GroupState.empty(GROUP)
        self.do("ada", CREATE, value="7B")

    def op(self, actor: str, action: str, target: str = "", value: str = ""):
        return sign_op(
            self.keys[actor], self.state.next_op(actor, action, target, value)
        )

    def do(self, actor: str, action: str, target: str = "", value: str = ""):
        op = self.op(actor, action, target, value)
        verify_op(op)
        assert op.actor_key == self.keys[actor].public_bytes()
        self.state = self.state.apply(op)
        return op


@pytest.fixture
def log() -> Log:
    group = Log()
    for name in ("mod", "sam", "kim"):
        group.do("ada", ADD, name)
    group.do("ada", SET_ROLE, "mod", "moderator")
    return group


def test_group_create_makes_the_creator_owner(log: Log) -> None:
    assert log.state.owner == "ada"
    assert log.state.name == "7B"
    assert log.state.epoch == 5


def test_group_op_naming_another_key_fails_verification(log: Log) -> None:
    op = replace(log.op("ada", ADD, "zoe"), actor_key=log.keys["sam"].public_bytes())
    with pytest.raises(GroupOpError):
        verify_op(op)


def test_group_op_changed_after_signing_fails_verification(log: Log) -> None:
    op = replace(log.op("ada", ADD, "zoe"), target="eve")
    with pytest.raises(GroupOpError):
        verify_op(op)


def test_group_op_with_wrong_prev_hash_is_refused(log: Log) -> None:
    op = replace(log.op("ada", ADD, "zoe"), prev=bytes(32))
    with pytest.raises(GroupOpError, match="does not name"):
        log.state.apply(op)


def test_group_op_with_skipped_index_is_refused(log: Log) -> None:
    op = replace(log.op("ada", ADD, "zoe"), index=log.state.epoch + 2)
    with pytest.raises(GroupOpError, match="does not follow"):
        log.state.apply(op)


def test_group_member_cannot_add_or_mute(log: Log) -> None:
    with pytest.raises(GroupOpError, match="not a moderator"):
        log.state.apply(log.op("sam", ADD, "zoe"))
    with pytest.raises(GroupOpError, match="not a moderator"):
        log.state.apply(log.op("sam", MUTE, "kim"))


def test_group_moderator_cannot_remove_the_owner_or_make_moderators(log: Log) -> None:
    with pytest.raises(GroupOpError, match="cannot remove"):
        log.state.apply(log.op("mod", REMOVE, "ada"))
    with pytest.raises(GroupOpError, match="Only the owner"):
        log.state.apply(log.op("mod", SET_ROLE, "sam", "moderator"))


def test_group_mute_and_read_only_decide_who_may_post(log: Log) -> None:
    log.do("mod", MUTE, "sam")
    assert not log.state.may_post("sam")
    assert log.state.may_post("kim")
    log.do("ada", READ_ONLY, value="on")
    assert not log.state.may_post("kim")
    assert log.state.may_post("mod")
    assert log.state.post_refusal("kim") == (
        "The group is read-only: only its moderators may post."
    )


def test_group_removed_member_may_not_post_and_is_unmuted(log: Log) -> None:
    log.do("mod", MUTE, "sam")
    log.do("mod", REMOVE, "sam")
    assert not log.state.is_member("sam")
    assert "sam" not in log.state.muted
    assert log.state.post_refusal("sam") == "You are not a member of this group."


def test_group_owner_cannot_leave_but_member_can(log: Log) -> None:
    with pytest.raises(GroupOpError, match="owner cannot leave"):
        log.state.apply(log.op("ada", LEAVE, "ada"))
    log.do("kim", LEAVE, "kim")
    assert not log.state.is_member("kim")


def test_group_delete_allowed_to_author_and_moderator_only(log: Log) -> None:
    log.do("sam", DELETE, value=f"sam/{MESSAGE}")
    log.do("mod", DELETE, value=f"kim/{MESSAGE}")
    with pytest.raises(GroupOpError, match="not a moderator"):
        log.state.apply(log.op("sam", DELETE, value=f"kim/{MESSAGE}"))


def test_group_op_shapes_are_checked(log: Log) -> None:
    with pytest.raises(GroupOpError, match="name needs"):
        log.state.apply(log.op("ada", "rename", value="   "))
    with pytest.raises(GroupOpError, match="wrong target"):
        log.state.apply(log.op("ada", ADD))
    with pytest.raises(GroupOpError, match="no message"):
        log.state.apply(log.op("ada", DELETE, value="not a reference"))
    with pytest.raises(GroupOpError, match="Unknown group action"):
        log.state.apply(log.op("ada", "promote", "sam"))


def test_group_state_survives_a_json_round_trip(log: Log) -> None:
    log.do("mod", MUTE, "sam")
    assert GroupState.from_json(log.state.to_json()) == log.state


def test_group_op_lines_name_actor_and_target(log: Log) -> None:
    op = log.op("ada", ADD, "zoe")
    assert describe_op(op, {"ada": "Ms Ada", "zoe": "Zoe"}) == "Ms Ada added Zoe"


@pytest.mark.parametrize("name", ["abc\u202egpj.exe", "zero\u200bwidth", "\u2066x"])
def test_group_name_with_hidden_characters_is_refused(log: Log, name: str) -> None:
    with pytest.raises(GroupOpError, match="direction characters"):
        log.state.apply(log.op("ada", "rename", value=name))


def test_group_refusal_names_the_right_action(log: Log) -> None:
    with pytest.raises(GroupOpError, match="cannot change who may post"):
        log.state.apply(log.op("sam", READ_ONLY, value="on"))
