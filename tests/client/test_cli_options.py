"""Command line options rejected before anything connects."""

from __future__ import annotations

import ssl

import pytest

from enctalk.cli import EXIT_USAGE, build_parser, main
from enctalk.client.core import Client
from enctalk.client.errors import ClientError
from enctalk.client.trust import connection_error


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e300", "soon"])
def test_timeout_rejects_invalid_values(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--profile", str(tmp_path), "--timeout", value, "contacts"])
    assert caught.value.code == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


def test_timeout_accepts_positive_seconds():
    args = build_parser().parse_args(["--timeout", "2.5", "contacts"])
    assert args.timeout == 2.5


def test_help_states_listen_exit_on_ctrl_c():
    text = build_parser().format_help()
    assert "except listen" in text


@pytest.mark.parametrize("value", ["0", "-3", "2147483648", "9" * 5000, "x"])
def test_remove_device_rejects_invalid_ids(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--profile", str(tmp_path), "remove-device", value])
    assert caught.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "set_int_max_str_digits" not in err
    assert len(err) < 1000


def test_connection_error_names_eof_during_handshake():
    error = connection_error("127.0.0.1", 5443, ssl.SSLEOFError(8, "EOF"))
    assert "closed the connection during the TLS handshake" in error.message
    assert "limiting connections" in error.message


def test_send_text_to_self_rejected(tmp_path):
    client = Client(tmp_path / "p")
    try:
        client.profile.username = "alice"
        with pytest.raises(ClientError) as caught:
            client.send_text("Alice", "hi")
        assert caught.value.message == "You cannot send messages to yourself."
    finally:
        client.close()


def test_long_invalid_username_is_truncated(tmp_path):
    client = Client(tmp_path / "p")
    try:
        with pytest.raises(ClientError) as caught:
            client.send_text("!" * 10000, "hi")
        assert len(caught.value.message) < 300
    finally:
        client.close()
