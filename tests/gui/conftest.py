"""A virtual X display, xdotool and screenshots for the desktop client tests.

The tests need Xvfb, xdotool and ImageMagick's ``import``. Without them
they are skipped, except when ``CI=true``: CI installs them, so there a
missing tool fails the run. Screenshots go to test-artifacts/gui/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    ROOT,
    make_server,
    server,
)

ARTIFACTS = ROOT / "test-artifacts" / "gui"
TOOLS = ("Xvfb", "xdotool", "import")
XVFB_START_TIMEOUT = 10.0
WINDOW_TIMEOUT = 20.0
IMAGEMAGICK_IMPORT = "/usr/bin/import"


def _missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_display_tools() -> None:
    """Skip the test when a tool is missing; fail instead under CI=true."""
    missing = _missing_tools()
    if not missing:
        return
    reason = f"missing {', '.join(missing)} (apt-get install xvfb xdotool imagemagick)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"GUI tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """Start Xvfb on a free display and return its name, such as ``:3``."""
    require_display_tools()
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_end),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        number = _read_display_number(read_end)
        yield f":{number}"
    finally:
        os.close(read_end)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _read_display_number(fd: int) -> int:
    deadline = time.monotonic() + XVFB_START_TIMEOUT
    text = b""
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            chunk = b""
        text += chunk
        if text.endswith(b"\n"):
            return int(text.strip())
        time.sleep(0.02)
    raise RuntimeError(f"Xvfb did not report a display within {XVFB_START_TIMEOUT} s")


class Desktop:
    """Runs xdotool and takes screenshots on one virtual display."""

    def __init__(self, display_name: str, artifacts: Path) -> None:
        self.display = display_name
        self.artifacts = artifacts
        self.env = {**os.environ, "DISPLAY": display_name}
        self.shots = 0

    def xdotool(self, *args: str, timeout: float = 10.0) -> str:
        result = subprocess.run(
            ["xdotool", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result.stdout.strip()

    def find_window(self, name: str, timeout: float = WINDOW_TIMEOUT) -> str:
        """Return the id of the newest window whose name matches the regex."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = self.xdotool("search", "--name", name, timeout=5)
            except subprocess.TimeoutExpired:
                found = ""
            if found:
                return found.splitlines()[-1]
            time.sleep(0.1)
        self.screenshot(f"missing-{re.sub(r'[^A-Za-z0-9]+', '-', name)}")
        raise AssertionError(f"no window named {name!r} within {timeout} s")

    def focus(self, window: str) -> None:
        self.xdotool("windowfocus", "--sync", window)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "8", text, timeout=30)

    def key(self, *keys: str) -> None:
        self.xdotool("key", *keys)

    def screenshot(self, name: str) -> Path:
        self.shots += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{self.shots:02d}-{name}.png"
        command = IMAGEMAGICK_IMPORT if Path(IMAGEMAGICK_IMPORT).exists() else "import"
        subprocess.run(
            [command, "-window", "root", str(path)],
            env=self.env,
            timeout=20,
            check=False,
        )
        return path


@pytest.fixture
def desktop(display: str, request: pytest.FixtureRequest) -> Desktop:
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    return Desktop(display, artifacts)


class GuiProcess:
    """``run_client.py`` with no command, on the virtual display."""

    def __init__(self, desktop: Desktop, profile: Path, server_address: str) -> None:
        self.trace = profile.parent / f"{profile.name}-trace.jsonl"
        self.stderr_path = profile.parent / f"{profile.name}-gui.err"
        env = {
            **desktop.env,
            "ENCTALK_UI_TRACE": str(self.trace),
        }
        env.pop("ENCTALK_PASSWORD", None)
        self.stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run_client.py"),
                "--profile",
                str(profile),
                "--server",
                server_address,
                "--no-discovery",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def shown_message_ids(self) -> list[str]:
        import json

        if not self.trace.exists():
            return []
        lines = self.trace.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["message_id"] for line in lines if line]

    def stderr_text(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.stderr.close()


@pytest.fixture
def start_gui(desktop: Desktop) -> Iterator[object]:
    started: list[GuiProcess] = []

    def start(profile: Path, server_address: str) -> GuiProcess:
        gui = GuiProcess(desktop, profile, server_address)
        started.append(gui)
        return gui

    yield start
    for gui in started:
        gui.stop()
