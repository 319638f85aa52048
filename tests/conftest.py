"""Fixtures live per concern in tests/fixtures/; each module is registered here.

The whole run writes nothing outside temporary directories: `LIVEMON_DATA_DIR` (the recording
store's and every worker's default data directory, inherited by the processes tests start)
points into the run's temporary directory, never at the user's ~/.local/share/livemon.
"""

import os

import pytest

pytest_plugins = [f"tests.fixtures.{name}" for name in ("broker", "worker", "prometheus", "alertmanager", "browser")]


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory):
    saved = {name: os.environ.get(name) for name in ("LIVEMON_DATA_DIR", "XDG_DATA_HOME")}
    os.environ["LIVEMON_DATA_DIR"] = str(tmp_path_factory.mktemp("livemon-data"))
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
