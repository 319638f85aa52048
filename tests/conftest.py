"""Fixtures live per concern in tests/fixtures/; each module is registered here."""

import importlib.util

_FIXTURE_MODULES = ["broker", "worker", "prometheus", "alertmanager", "browser"]

pytest_plugins = [
    f"tests.fixtures.{name}" for name in _FIXTURE_MODULES
    if importlib.util.find_spec(f"tests.fixtures.{name}") is not None
]
