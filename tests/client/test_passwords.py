import pytest

from enctalk.client.errors import ClientError
from enctalk.client.passwords import (
    MAX_PASSWORD_LENGTH,
    check_new_password,
    common_passwords,
    password_problem,
)


def test_password_shorter_than_minimum_rejected():
    assert password_problem("abc1234") is not None
    assert "at least 8" in (password_problem("abc1234") or "")


def test_password_length_counts_code_points_after_nfkc():
    # Eight code points, although far more than eight UTF-8 bytes.
    assert password_problem("ŵëķřøþąñ") is None
    # "ﬁ" (one code point) becomes "fi" (two) under NFKC.
    assert password_problem("ﬁﬁﬁﬁ") is None
    assert password_problem("ﬁﬁﬁ") is not None


def test_password_over_maximum_rejected():
    assert password_problem("x" * MAX_PASSWORD_LENGTH + "y") is not None
    assert password_problem("correct horse " * 70) is None


def test_common_password_rejected_ignoring_case():
    assert password_problem("password") is not None
    assert password_problem("PassWord1") is not None
    assert password_problem("QWERTYUIOP") is not None
    assert password_problem("iloveyou1") is not None


def test_common_password_list_has_hundreds_of_long_entries():
    passwords = common_passwords()
    assert len(passwords) >= 300
    assert all(len(entry) >= 8 for entry in passwords)


def test_password_equal_to_username_rejected():
    assert password_problem("SomeLongName", "somelongname") is not None


def test_password_without_character_classes_accepted():
    assert password_problem("lantern meadow violet") is None


def test_check_new_password_raises_weak_password():
    with pytest.raises(ClientError) as info:
        check_new_password("12345678")
    assert info.value.code == "weak_password"
