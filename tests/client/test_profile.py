import json
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


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"server": {"host": "lab", "port": "5443x"}}, "server port '5443x'"),
        ({"server": {"host": "lab", "port": 0}}, "server port 0"),
        ({"server": {"host": "lab", "port": True}}, "server port True"),
        ({"server": {"host": 7, "port": 5443}}, "server host 7"),
        ({"server": "lab:5443"}, "server address is not an object"),
        ({"username": 12}, "username 12"),
        ({"device_id": "3"}, "device id '3'"),
        ({"known_servers": []}, "known_servers"),
        ({"known_servers": None}, "known_servers"),
    ],
)
def test_profile_invalid_setting_raises_profile_invalid(tmp_path, settings, problem):
    directory = tmp_path / "p"
    directory.mkdir()
    path = directory / "settings.json"
    path.write_text(json.dumps({"version": 1, **settings}))
    with pytest.raises(ClientError) as info:
        Profile(directory)
    assert info.value.code == "profile_invalid"
    assert str(path) in info.value.message
    assert problem in info.value.message
    assert "--profile" in info.value.message


def test_profile_damaged_known_servers_is_kept_on_disk(tmp_path):
    directory = tmp_path / "p"
    directory.mkdir()
    path = directory / "settings.json"
    path.write_text('{"known_servers": "damaged"}')
    with pytest.raises(ClientError):
        Profile(directory)
    assert path.read_text() == '{"known_servers": "damaged"}'


def test_profile_without_known_servers_starts_empty(tmp_path):
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "settings.json").write_text('{"version": 1}')
    assert Profile(directory).known_servers == {}
