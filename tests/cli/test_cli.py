"""The command line as a user runs it: real subprocesses, real demo dataset."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tui.paths import ROOT


def mirdeck(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=300)


def test_demo_runs_headless_and_writes_info_files(tmp_path):
    result = mirdeck("demo", "--dir", tmp_path / "demo", "--only", "audio_info")
    assert result.returncode == 0, result.stderr
    assert "audio_info" in result.stdout and "RT wall" in result.stdout
    truth = json.loads((tmp_path / "demo" / ".mirdeck-demo.json").read_text())
    for name, facts in truth.items():
        info = json.loads((tmp_path / "demo" / name / f"{name}.INFO").read_text())
        assert info["duration_seconds"] == pytest.approx(facts["seconds"], abs=1e-3)
    logs = list((tmp_path / "demo" / ".mirdeck" / "runs").glob("*/events.jsonl"))
    assert len(logs) == 1
    again = mirdeck("run", tmp_path / "demo", "--only", "audio_info")
    assert again.returncode == 0 and "already done, skipped" in again.stdout


def test_unknown_module_and_broken_profile_fail_before_starting(tmp_path):
    (tmp_path / "ds").mkdir()
    result = mirdeck("run", tmp_path / "ds", "--only", "lufs")
    assert result.returncode == 2 and "unknown module 'lufs'" in result.stderr
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "broken.toml").write_text('[env\nX = "1"\n')
    result = mirdeck("run", tmp_path / "ds", "--profile", "broken", env={"MIRDECK_PROFILES_DIR": str(profiles)})
    assert result.returncode == 2 and "broken.toml: TOML syntax error" in result.stderr
    result = mirdeck("run", tmp_path / "nope")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_profiles_command_shows_the_effective_environment():
    result = mirdeck("profiles", "rocm-7.2")
    assert result.returncode == 0
    assert "extends: rocm-7.2 -> rocm-rdna4" in result.stdout
    assert "PYTORCH_ALLOC_CONF=garbage_collection_threshold:0.8,max_split_size_mb:512" in result.stdout
    assert "HSA_TOOLS_LIB=" in result.stdout
    listing = mirdeck("profiles")
    assert all(name in listing.stdout for name in ("cpu", "cuda", "rocm-rdna4", "rocm-7.2"))


def test_modules_and_models_commands_answer():
    result = mirdeck("modules")
    assert result.returncode == 0 and "audio_info v1" in result.stdout and "duration_seconds" in result.stdout
    result = mirdeck("models")
    assert result.returncode == 0 and "weights folder" in result.stdout


def test_demo_skips_modules_whose_models_are_missing_and_says_what_to_fetch(tmp_path):
    env = {"MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.needsmodel", "PYTHONPATH": str(ROOT)}
    result = mirdeck("demo", "--dir", tmp_path / "demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "skipping needsmodel: model not installed (mirdeck models fetch test-model)" in result.stderr
    info = json.loads((tmp_path / "demo" / "Tiny - Blip" / "Tiny - Blip.INFO").read_text())
    assert "needsmodel" not in info["_mirdeck"] and "audio_info" in info["_mirdeck"]


NEEDSMODEL = {"MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.needsmodel", "PYTHONPATH": str(ROOT)}
QUICK_ONLY = "chroma,harmonic,loudness,multiband_rms,rhythm,spectral,timbral"  # everything but audio_info


def test_a_run_leaves_out_modules_without_models_once_and_succeeds(tmp_path):
    assert mirdeck("demo", "--dir", tmp_path / "demo", "--no-run").returncode == 0
    result = mirdeck("run", tmp_path / "demo", "--skip", QUICK_ONLY, env=NEEDSMODEL)
    assert result.returncode == 0, result.stderr
    line = "skipping needsmodel: model not installed (mirdeck models fetch test-model)"
    assert result.stderr.count(line) == 1  # one line per module, not one per track
    assert "model_missing" not in result.stdout + result.stderr
    assert "needsmodel" not in result.stdout.split("RT core")[-1]  # not a row of the run table


def test_a_module_named_with_only_whose_model_is_missing_is_refused_before_starting(tmp_path):
    assert mirdeck("demo", "--dir", tmp_path / "demo", "--no-run").returncode == 0
    result = mirdeck("run", tmp_path / "demo", "--only", "audio_info,needsmodel", env=NEEDSMODEL)
    assert result.returncode == 2
    assert "needsmodel: model not installed; fetch it with: mirdeck models fetch test-model" in result.stderr
    assert not (tmp_path / "demo" / ".mirdeck" / "runs").exists()
    assert not list((tmp_path / "demo").glob("*/*.INFO"))


def test_a_run_refused_before_it_starts_leaves_no_run_folder(tmp_path):
    ds = tmp_path / "ds"
    (ds / "a").mkdir(parents=True)
    for args in (["--only", "bogus"], ["--skip", "bogus"], ["--overwrite", "bogus"], ["--set", "bogus.x=1"]):
        result = mirdeck("run", ds, *args, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
        assert result.returncode == 2 and "unknown module 'bogus'" in result.stderr, (args, result.stderr)
    assert not (ds / ".mirdeck").exists() and not (tmp_path / "cache").exists()


def test_the_models_a_run_needs_follow_its_flamingo_options(tmp_path, monkeypatch):
    """A run on the user's own GGUF files or checkpoint folder needs nothing fetched; another
    quantisation needs its own weights, not the default's."""
    from tui.cli import modules_missing_models

    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "no-models"))
    default = modules_missing_models({})
    assert default["flamingo_gguf"] == ["music_flamingo_q8_0", "music_flamingo_mmproj"]
    assert default["flamingo_hf"] == ["music_flamingo_hf"]
    q6 = modules_missing_models({"flamingo_gguf": {"quant": "Q6_K"}})
    assert q6["flamingo_gguf"] == ["music_flamingo_q6_k", "music_flamingo_mmproj"]
    own = modules_missing_models({"flamingo_gguf": {"model_file": str(tmp_path / "m.gguf"),
                                                    "mmproj_file": str(tmp_path / "p.gguf")},
                                  "flamingo_hf": {"model_dir": str(tmp_path / "checkpoint")}})
    assert "flamingo_gguf" not in own and "flamingo_hf" not in own
