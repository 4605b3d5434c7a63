"""Fixtures of the build tests: the Xvfb display of the GUI tests."""

from tests.gui.conftest import display  # noqa: F401  (fixture)


def pytest_configure(config: object) -> None:
    add_line = getattr(config, "addinivalue_line")  # noqa: B009
    add_line("markers", "slow: builds executables or namespaces; runs in CI")
