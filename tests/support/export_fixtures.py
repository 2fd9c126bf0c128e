"""The analysed dataset the export and report tests share (registered in tests/conftest.py)."""
import shutil

import pytest

from tests.support.export_dataset import build


@pytest.fixture(scope="session")
def analysed(tmp_path_factory):
    """The analysed dataset, built once; tests that change it use ``dataset`` (a copy)."""
    return build(tmp_path_factory.mktemp("export-dataset"))


@pytest.fixture
def dataset(analysed, tmp_path):
    return shutil.copytree(analysed, tmp_path / "dataset", symlinks=True)
