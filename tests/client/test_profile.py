import os
import stat
from pathlib import Path

import pytest

from enctalk.client.errors import ClientError
from enctalk.client.profile import Profile, default_profile_dir


def test_default_profile_dir_linux_uses_xdg_data_home():
    path = default_profile_dir("linux", {"HOME": "/home/a", "XDG_DATA_HOME": "/x/d"})
    assert path == Path("/x/d/enctalk/default")


def test_default_profile_dir_linux_without_xdg():
    path = default_profile_dir("linux", {"HOME": "/home/a"})
    assert path == Path("/home/a/.local/share/enctalk/default")


def test_default_profile_dir_windows_uses_appdata():
    path = default_profile_dir("win32", {"HOME": "/h", "APPDATA": "/c/Roaming"})
    assert path == Path("/c/Roaming/EncTalk/default")


def test_default_profile_dir_macos():
    path = default_profile_dir("darwin", {"HOME": "/Users/a"})
    assert path == Path("/Users/a/Library/Application Support/EncTalk/default")


def test_profile_settings_round_trip(tmp_path):
    profile = Profile(tmp_path / "p")
    profile.server = ("::1", 6000)
    profile.username = "alice"
    profile.device_id = 3
    profile.known_servers["[::1]:6000"] = {"fingerprint": "SHA256:AA"}
    profile.save()
    again = Profile(tmp_path / "p")
    assert again.server == ("::1", 6000)
    assert again.username == "alice"
    assert again.device_id == 3
    assert again.known_servers["[::1]:6000"]["fingerprint"] == "SHA256:AA"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_profile_directory_and_settings_are_private(tmp_path):
    profile = Profile(tmp_path / "p")
    profile.save()
    assert stat.S_IMODE(profile.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(profile.settings_path.stat().st_mode) == 0o600


def test_profile_corrupt_settings_raises_profile_invalid(tmp_path):
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "settings.json").write_text("{not json")
    with pytest.raises(ClientError) as info:
        Profile(directory)
    assert info.value.code == "profile_invalid"
