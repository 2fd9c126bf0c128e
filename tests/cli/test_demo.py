"""The built-in demo dataset carries its own ground truth; the modules must agree with it."""
from __future__ import annotations

import json

import pytest

from tests.support.helpers import info_of, run_engine
from tui import demo


def test_demo_tracks_have_the_key_and_length_they_were_built_with(tmp_path):
    root = tmp_path / "demo"
    truth = demo.create(root)
    assert truth == json.loads((root / demo.TRUTH_FILE).read_text())
    run_engine(root, only=["audio_info", "chroma"])
    for name, facts in truth.items():
        info = info_of(root / name)
        assert info["duration_seconds"] == pytest.approx(facts["seconds"], abs=1e-3)
        if facts["key"]:
            assert info["key"] == facts["key"]
        assert sorted(p.stem for p in (root / name).iterdir() if p.stem in ("drums", "bass", "other")) \
            == sorted(facts["stems"])
