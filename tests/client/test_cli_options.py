"""Command line options rejected before anything connects."""

from __future__ import annotations

import pytest

from enctalk.cli import EXIT_USAGE, build_parser, main


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
