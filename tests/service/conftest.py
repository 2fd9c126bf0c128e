"""The environment every service test runs in: its own cache folder (where runs are registered)
and the test back ends; no service is left behind."""
import pytest

from tests.support.service import kill_if_alive, service_env
from tui.service import registry


@pytest.fixture
def env(tmp_path, monkeypatch):
    environment = service_env(tmp_path / "cache")
    for key in ("MIRDECK_CACHE_DIR", "MIRDECK_EXTRA_BACKENDS", "PYTHONPATH"):
        monkeypatch.setenv(key, environment[key])
    yield environment
    for record in registry.runs_in_progress():  # never leave a service behind
        kill_if_alive(record.pid)
