"""--version and --self-test from the source tree, and the known-answer runner."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from enctalk.crypto import selftest as crypto_selftest
from enctalk.selftest import EXIT_FAILED, EXIT_PASSED, SelfTestFailure, run_checks
from enctalk.version import SOURCE_BUILD_DATE, VERSION, version_text

ROOT = Path(__file__).resolve().parents[2]


def test_known_answer_tests_all_pass() -> None:
    results = crypto_selftest.run_known_answer_tests()
    assert len(results) == len(crypto_selftest.CHECKS)
    assert [reason for _, reason in results] == [None] * len(results)


def test_known_answer_tests_report_wrong_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crypto_selftest, "HKDF_OKM", bytes(42))
    results = dict(crypto_selftest.run_known_answer_tests())
    assert results["HKDF-SHA256 (RFC 5869 A.1)"] == "wrong result"
    assert results["X25519 (RFC 7748 6.1)"] is None


def test_run_checks_exit_status_and_lines() -> None:
    def broken() -> str:
        raise SelfTestFailure("library missing")

    out = io.StringIO()
    status = run_checks([("good", lambda: "fine"), ("bad", broken)], out)
    lines = out.getvalue().splitlines()
    assert status == EXIT_FAILED
    assert lines[0] == "ok   good: fine"
    assert lines[1] == "FAIL bad: library missing"
    assert lines[2] == "self-test failed: 1 of 2 checks"
    assert run_checks([("good", lambda: "")], io.StringIO()) == EXIT_PASSED


def test_version_matches_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match is not None
    assert match.group(1) == VERSION
    assert version_text("enctalk") == f"enctalk {VERSION} (built {SOURCE_BUILD_DATE})"


@pytest.mark.parametrize("script", ["run_client.py", "run_server.py"])
def test_source_version_flag(script: str) -> None:
    result = subprocess.run(
        [sys.executable, script, "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert VERSION in result.stdout


@pytest.mark.parametrize("script", ["run_client.py", "run_server.py"])
def test_source_self_test_passes(script: str) -> None:
    result = subprocess.run(
        [sys.executable, script, "--self-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SDL_AUDIODRIVER": "dummy"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-test passed" in result.stdout
    assert "known-answer tests passed" in result.stdout
