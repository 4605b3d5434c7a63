"""The server's log_file setting: a size-rotated log instead of stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server.config import build_config

ROOT = Path(__file__).resolve().parents[2]


def test_log_file_receives_server_log(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "run_server.py",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--bcrypt-cost",
            "4",
            "--data-dir",
            str(tmp_path / "data"),
            "--log-file",
            str(log_file),
            "--log-max-bytes",
            "4096",
            "--log-backup-count",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("listening on"):
                break
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    text = log_file.read_text(encoding="utf-8")
    assert "server listening on 127.0.0.1:" in text
    assert "server stopped" in text
    assert "server listening" not in stderr


def test_log_settings_are_checked(tmp_path: Path) -> None:
    config = build_config(
        None, {"log_file": str(tmp_path / "x.log"), "log_backup_count": 3}
    )
    assert config.log_file == tmp_path / "x.log"
    assert config.log_backup_count == 3
    assert config.log_max_bytes == 10 * 1024 * 1024
