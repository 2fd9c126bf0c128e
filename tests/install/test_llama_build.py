"""The llama.cpp build plan and cache key (no compiler run here; tests/flamingo/test_gguf.py builds)."""
from __future__ import annotations

import pytest

from tui.install import llama as lb


def test_variants_get_their_flags_and_distinct_keys():
    cpu, cuda = lb.plan_for("cpu"), lb.plan_for("cuda")
    rocm = lb.plan_for("rocm", "gfx1201")
    for plan in (cpu, cuda, rocm):
        assert {"-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
                "-DLLAMA_USE_PREBUILT_UI=OFF"} <= set(plan.flags)
    assert "-DGGML_CUDA=ON" in cuda.flags and "-DGGML_HIP=ON" in rocm.flags and "-DGPU_TARGETS=gfx1201" in rocm.flags
    cuda_89 = lb.plan_for("cuda", "89,90")
    assert "-DCMAKE_CUDA_ARCHITECTURES=89;90" in cuda_89.flags
    assert not any(f.startswith("-DCMAKE_CUDA_ARCHITECTURES") for f in cuda.flags)  # ggml's own list
    keys = {cpu.key, cuda.key, cuda_89.key, rocm.key, lb.plan_for("rocm", "gfx1100").key}
    assert len(keys) == 5
    assert lb.plan_for("cpu").key == cpu.key  # stable, so a second build is reused


def test_rocm_without_targets_and_unknown_variant_are_refused():
    with pytest.raises(lb.BuildError, match="gpu_targets"):
        lb.plan_for("rocm")
    with pytest.raises(lb.BuildError, match="unknown llama.cpp build"):
        lb.plan_for("vulkan")


def test_profiles_choose_the_variant():
    assert lb.plan_for_profile("cpu").variant == "cpu"
    rocm = lb.plan_for_profile("rocm-7.2")  # extends rocm-rdna4, which names gfx1201
    assert rocm.variant == "rocm" and "-DGPU_TARGETS=gfx1201" in rocm.flags


def test_describe_without_a_build_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "bin_link_dir", lambda: tmp_path)
    monkeypatch.delenv("MIRDECK_LLAMA_BIN_DIR", raising=False)
    assert "bin/build-llama --variant cuda" in lb.describe("cuda")


def test_a_tampered_source_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / lb.SOURCE_FILE
    fake.write_bytes(b"not the sdist")
    monkeypatch.setenv("MIRDECK_LLAMA_SDIST", str(fake))
    with pytest.raises(lb.BuildError, match="does not match the pinned"):
        lb.fetch_source(log=lambda m: None)


def _patch(tmp_path, name: str, old: str, new: str):
    path = tmp_path / name
    path.write_text(f"why: a test\n\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    return path


def test_patches_apply_to_a_tree_with_a_stray_git_link_inside_a_repository_and_key_the_build(tmp_path, monkeypatch):
    """The pinned sdist's llama.cpp folder holds a ``.git`` file pointing into its maker's checkout
    (git fails on it: "not a git repository"), and the cache may lie inside a repository."""
    import subprocess

    repo = tmp_path / "repo"
    tree = repo / "cache" / "tree"
    tree.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (tree / ".git").write_text("gitdir: ../../.git/modules/vendor/llama.cpp\n")
    (tree / "a.txt").write_text("one\n")
    before = lb.plan_for("cpu").key
    monkeypatch.setattr(lb, "PATCHES", (_patch(tmp_path, "fix.patch", "one", "two"),))
    lb.apply_patches(tree, log=lambda m: None)
    assert (tree / "a.txt").read_text() == "two\n"
    assert lb.plan_for("cpu").key != before  # a changed patch is a new build

    monkeypatch.setattr(lb, "PATCHES", (_patch(tmp_path, "stale.patch", "three", "four"),))
    with pytest.raises(lb.BuildError, match="stale.patch does not apply"):
        lb.apply_patches(tree, log=lambda m: None)
    assert (tree / "a.txt").read_text() == "two\n"


def test_a_gpu_build_without_its_toolkit_says_what_to_install_before_fetching_anything(tmp_path, monkeypatch):
    for var in ("CUDACXX", "CUDA_PATH", "CUDA_HOME", "CUDAToolkit_ROOT", "ROCM_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MIRDECK_LLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(lb.shutil, "which", lambda name, path=None: None)
    monkeypatch.setenv("ROCM_PATH", str(tmp_path / "no-rocm"))
    with pytest.raises(lb.BuildError, match="CUDA toolkit.*no nvcc"):
        lb.build(lb.plan_for("cuda"), log=lambda m: None)
    with pytest.raises(lb.BuildError, match="ROCm HIP SDK"):
        lb.build(lb.plan_for("rocm", "gfx1201"), log=lambda m: None)

    # nvcc without cuBLAS (this machine's own toolkit is such a one)
    toolkit = tmp_path / "cuda"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "include").mkdir()
    (toolkit / "bin" / "nvcc").write_text("#!/bin/sh\n")
    monkeypatch.setenv("CUDACXX", str(toolkit / "bin" / "nvcc"))
    monkeypatch.setattr(lb, "CUDA_SYSTEM_ROOTS", ())
    with pytest.raises(lb.BuildError, match="no cublas_v2.h"):
        lb.build(lb.plan_for("cuda"), log=lambda m: None)
    (toolkit / "include" / "cublas_v2.h").write_text("")
    assert lb.missing_toolkit("cuda") is None
    assert not (tmp_path / "cache").exists()  # nothing fetched or extracted
