"""Profiles: loading, inheritance, validation errors that name file, line and key."""
from __future__ import annotations

import os

import pytest

from tui.run.profiles import ProfileError, list_names, load


def write(directory, name, text):
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_profiles_load_with_the_reference_variables():
    assert {"cpu", "cuda", "rocm-rdna4", "rocm-7.2"} <= set(list_names())
    rdna4 = load("rocm-rdna4")
    assert rdna4.env["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    assert rdna4.env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE"
    assert rdna4.env["PYTORCH_TUNABLEOP_ENABLED"] == "1" and rdna4.env["PYTORCH_TUNABLEOP_TUNING"] == "0"
    assert rdna4.env["OMP_NUM_THREADS"] == "8" and rdna4.env["HIP_FORCE_DEV_KERNARG"] == "1"
    r72 = load("rocm-7.2")
    assert r72.chain == ["rocm-7.2", "rocm-rdna4"]
    assert r72.env["PYTORCH_ALLOC_CONF"] == "garbage_collection_threshold:0.8,max_split_size_mb:512"
    assert r72.env["TORCH_COMPILE"] == "0" and r72.env["HSA_TOOLS_LIB"] == ""
    assert r72.env["HIP_FORCE_DEV_KERNARG"] == "1"  # inherited
    assert r72.llama["gpu_targets"] == "gfx1201" and r72.device == "rocm"


def test_child_env_applies_profile_and_backend_overrides_without_touching_the_parent(tmp_path):
    write(tmp_path, "base", '[env]\nA = "1"\nB = "base"\n[backend.audio_info]\ntimeout_s = 5\n'
                            '[backend.audio_info.env]\nB = "backend"\n')
    write(tmp_path, "child", 'extends = "base"\n[env]\nC = "3"\n')
    before = dict(os.environ)
    profile = load("child", directory=tmp_path)
    env = profile.child_env("audio_info")
    assert env["A"] == "1" and env["B"] == "backend" and env["C"] == "3" and env["MIRDECK_PROFILE"] == "child"
    assert profile.child_env("other")["B"] == "base"
    assert profile.timeout_for("audio_info", 600) == 5 and profile.timeout_for("other", 600) == 600
    assert dict(os.environ) == before


@pytest.mark.parametrize("text, message", [
    ('device = "cpu"\n[env\nA = "1"\n', r"bad\.toml: TOML syntax error"),
    ('description = "x"\ndevise = "cpu"\n', r"bad\.toml:2: unknown key 'devise'"),
    ('device = "tpu"\n', r"bad\.toml:1: device must be one of cpu, cuda, rocm, not 'tpu'"),
    ('[env]\nOMP_NUM_THREADS = 8\n', r"bad\.toml:2: env\.OMP_NUM_THREADS must be a string"),
    ('\n\n[backend.no_such_backend]\ntimeout_s = 3\n', r"bad\.toml:3: unknown backend 'no_such_backend'"),
    ('[backend.audio_info]\ntimeout_s = "soon"\n', r"bad\.toml:2: 'backend\.audio_info\.timeout_s' must be a number"),
    ('extends = "missing"\n', r"no profile named 'missing'"),
    ('vram_budget_gb = -1\n', r"bad\.toml:1: vram_budget_gb must not be negative"),
])
def test_validation_errors_name_file_line_and_key(tmp_path, text, message):
    write(tmp_path, "bad", text)
    with pytest.raises(ProfileError, match=message):
        load("bad", directory=tmp_path)


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path, "a", 'extends = "b"\n')
    write(tmp_path, "b", 'extends = "a"\n')
    with pytest.raises(ProfileError, match="cycle"):
        load("a", directory=tmp_path)


def test_unknown_profile_lists_the_available_ones(tmp_path):
    write(tmp_path, "one", "")
    with pytest.raises(ProfileError, match="no profile named 'two'.*available: one"):
        load("two", directory=tmp_path)
