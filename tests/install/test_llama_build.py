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


def _fake_build(cache, plan_key: str, *, sha256: str | None, patches: str | None, age_s: float = 0.0):
    import json
    import os
    import time

    folder = cache / plan_key
    (folder / "bin").mkdir(parents=True)
    for name in lb.TARGETS:
        (folder / "bin" / name).write_bytes(b"\0" * 1000)
    if sha256 is not None:
        (folder / lb.STAMP).write_text(json.dumps({"key": plan_key, "version": lb.SOURCE_VERSION,
                                                   "sha256": sha256, "patches_sha256": patches}))
    then = time.time() - age_s
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))
    return folder


def test_prune_removes_only_what_this_checkout_can_never_reuse(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIRDECK_LLAMA_CACHE", str(cache))
    current = (lb.SOURCE_SHA256, lb.patches_digest())
    keep_cpu = _fake_build(cache, lb.plan_for("cpu").key, sha256=current[0], patches=current[1])
    keep_cuda = _fake_build(cache, "cuda-1111111111111111", sha256=current[0], patches=current[1])  # other flags
    old_patch = _fake_build(cache, "cpu-2222222222222222", sha256=current[0], patches="0" * 64)
    old_source = _fake_build(cache, "cpu-3333333333333333", sha256="f" * 64, patches=current[1])
    abandoned = _fake_build(cache, "cpu-4444444444444444", sha256=None, patches=None, age_s=2 * lb.BUSY_S)
    building = _fake_build(cache, "cpu-5555555555555555", sha256=None, patches=None)  # another build, now
    tree = cache / "src" / f"llama.cpp-{lb.SOURCE_VERSION}-{lb.SOURCE_SHA256[:12]}-{lb.patches_digest()[:8]}"
    stale_tree = cache / "src" / f"llama.cpp-{lb.SOURCE_VERSION}-{lb.SOURCE_SHA256[:12]}-00000000"
    for folder in (tree, stale_tree):
        folder.mkdir(parents=True)
        (folder / "CMakeLists.txt").write_bytes(b"x" * 500)
    (cache / "src" / lb.SOURCE_FILE).write_bytes(b"the sdist")
    gone = (old_patch, old_source, abandoned, stale_tree)
    expected = sum(f.stat().st_size for folder in gone for f in folder.rglob("*") if f.is_file())
    said = []
    freed = lb.prune(log=said.append)
    assert all(p.exists() for p in (keep_cpu, keep_cuda, building, tree, cache / "src" / lb.SOURCE_FILE))
    assert not any(p.exists() for p in gone)
    assert freed == expected > 0
    assert any("cpu-5555555555555555: unfinished, and being built or written to" in line for line in said)
    assert lb.prune(log=said.append) == 0  # nothing left to remove


def test_a_new_source_tree_replaces_the_trees_of_other_patch_sets(tmp_path, monkeypatch):
    import io
    import tarfile

    cache = tmp_path / "cache"
    monkeypatch.setenv("MIRDECK_LLAMA_CACHE", str(cache))
    sdist = tmp_path / lb.SOURCE_FILE
    with tarfile.open(sdist, "w:gz") as tar:
        data = b"project(llama.cpp)\n"
        member = tarfile.TarInfo(lb.VENDOR_PREFIX + "CMakeLists.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    monkeypatch.setattr(lb, "fetch_source", lambda log=print: sdist)
    monkeypatch.setattr(lb, "PATCHES", ())
    older = cache / "src" / f"llama.cpp-{lb.SOURCE_VERSION}-{lb.SOURCE_SHA256[:12]}-00000000"
    older.mkdir(parents=True)
    (older / ".complete").write_text("")
    said = []
    tree = lb.source_tree(log=said.append)
    assert (tree / "CMakeLists.txt").read_bytes() == b"project(llama.cpp)\n"
    assert not older.exists() and any("removing the source tree of another" in line for line in said)
    assert sorted(p.name for p in (cache / "src").iterdir() if not p.name.startswith(".")) == [tree.name]


def test_two_builds_of_one_key_at_once_build_it_once(tmp_path, monkeypatch):
    """Two test workers (pytest -n 2) asked for the CPU build at the same moment; the one that
    finished first removed the build folder the other was compiling in."""
    import json
    import threading
    import time

    monkeypatch.setenv("MIRDECK_LLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lb, "bin_link_dir", lambda: tmp_path / "links")
    monkeypatch.setattr(lb, "source_tree", lambda log=print: tmp_path / "tree")
    plan = lb.plan_for("cpu")
    builds = []

    def fake_build(plan, out, jobs, log=print):
        builds.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the second caller to arrive while this one builds
        (out / "bin").mkdir(parents=True)
        for name in lb.TARGETS:
            (out / "bin" / name).write_text("")
        (out / lb.STAMP).write_text(json.dumps({"key": plan.key}))
        return out

    monkeypatch.setattr(lb, "_build", fake_build)
    said: list[str] = []
    threads = [threading.Thread(target=lb.build, args=(plan,), kwargs={"log": said.append}) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1
    assert any("waiting for another process to finish building" in line for line in said)
    assert any("built meanwhile" in line for line in said)


def test_a_source_tree_a_build_is_reading_is_never_removed(tmp_path, monkeypatch):
    import fcntl

    cache = tmp_path / "cache"
    monkeypatch.setenv("MIRDECK_LLAMA_CACHE", str(cache))
    other = cache / "src" / f"llama.cpp-{lb.SOURCE_VERSION}-{lb.SOURCE_SHA256[:12]}-11111111"
    other.mkdir(parents=True)
    with open(lb._tree_lock(other), "a") as handle:  # another checkout compiling from it
        fcntl.flock(handle, fcntl.LOCK_SH)
        lb.prune(log=lambda m: None)
        assert other.is_dir()
    lb.prune(log=lambda m: None)
    assert not other.exists()  # its build ended: now it goes
