"""Build llama.cpp's ``llama-mtmd-cli`` and ``llama-server`` from a pinned registry source, and cache them.

The source is the ``llama-cpp-python`` sdist from PyPI (it vendors llama.cpp with ``tools/mtmd``,
audio input, the ``musicflamingo`` projector and ``convert_hf_to_gguf.py``), pinned by version and
sha256, with mirdeck's own patches (``tui/install/llama_patches/*.patch``, each saying why) applied to
the extracted tree. A build is keyed by (source version, source sha256, patches, variant, cmake flags) and lands in
``<cache>/llama/<key>/`` with a ``stamp.json``; ``bin/llama/<variant>`` links to it. A second call
with the same key reuses it, so CI runs on the same machine pay the ~10 minute CPU build once.

Stdlib only: ``bin/build-llama`` runs this before any virtual environment exists.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tui import paths
from tui.install.safe_tar import UnsafeArchive, extract_all

SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SOURCE_FILE = f"llama_cpp_python-{SOURCE_VERSION}.tar.gz"
VENDOR_PREFIX = f"llama_cpp_python-{SOURCE_VERSION}/vendor/llama.cpp/"
TARGETS = ("llama-mtmd-cli", "llama-server")
VARIANTS = ("cpu", "rocm", "cuda")
STAMP = "stamp.json"
CUDA_SYSTEM_ROOTS = ("/usr/local/cuda", "/usr")
PATCHES = tuple(sorted((Path(__file__).parent / "llama_patches").glob("*.patch")))

# Offline and small: static, no network code (curl, OpenSSL, the web UI download), nothing but
# the two tools. GGML_NATIVE=OFF keeps the CPU code portable to other machines of the same arch.
COMMON_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
)


class BuildError(RuntimeError):
    pass


def patches_digest() -> str:
    digest = hashlib.sha256()
    for patch in PATCHES:
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class BuildPlan:
    variant: str
    flags: tuple[str, ...]

    @property
    def key(self) -> str:
        blob = json.dumps({"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "sha256": SOURCE_SHA256,
                           "patches": patches_digest(), "variant": self.variant, "flags": list(self.flags),
                           "targets": list(TARGETS)},
                          sort_keys=True)
        return f"{self.variant}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def llama_cache() -> Path:
    return Path(os.environ.get("MIRDECK_LLAMA_CACHE", paths.cache_dir() / "llama"))


def bin_link_dir() -> Path:
    """The git-ignored place under ``bin/`` where the built variants are linked."""
    return paths.ROOT / "bin" / "llama"


def plan_for(variant: str, gpu_targets: str | None = None) -> BuildPlan:
    if variant not in VARIANTS:
        raise BuildError(f"unknown llama.cpp build {variant!r} (choose {', '.join(VARIANTS)})")
    flags = list(COMMON_FLAGS)
    if variant == "rocm":
        if not gpu_targets:
            raise BuildError("a ROCm build needs GPU targets: set [llama] gpu_targets in the profile "
                             "(gfx1201 for the RX 9070 XT) or pass --gpu-targets")
        flags += ["-DGGML_HIP=ON", f"-DGPU_TARGETS={gpu_targets}", f"-DAMDGPU_TARGETS={gpu_targets}"]
    elif variant == "cuda":
        flags += ["-DGGML_CUDA=ON"]
        if gpu_targets:
            # Only the named compute capabilities ("89" for an RTX 40xx, "90" for an H100): a fraction
            # of the build time of ggml's default list of six.
            flags += [f"-DCMAKE_CUDA_ARCHITECTURES={gpu_targets.replace(',', ';')}"]
    return BuildPlan(variant=variant, flags=tuple(flags))


def plan_for_profile(name: str) -> BuildPlan:
    from tui.run.profiles import load as load_profile
    profile = load_profile(name)
    return plan_for(str(profile.llama.get("build", "cpu")), profile.llama.get("gpu_targets"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_source(log=print) -> Path:
    """The verified sdist: ``$MIRDECK_LLAMA_SDIST`` if set, else the cached copy, else pip downloads it."""
    given = os.environ.get("MIRDECK_LLAMA_SDIST")
    target = llama_cache() / "src" / SOURCE_FILE
    if given:
        path = Path(given)
    elif target.is_file():
        path = target
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            log(f"build-llama: downloading {SOURCE_PACKAGE}=={SOURCE_VERSION} source from PyPI")
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--no-deps", "--no-binary", ":all:",
                   f"{SOURCE_PACKAGE}=={SOURCE_VERSION}", "-d", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / SOURCE_FILE
            if not got.is_file():
                raise BuildError(f"pip could not download {SOURCE_FILE}: {done.stderr.strip()[-800:]}\n"
                                 f"(offline? put the file somewhere and set MIRDECK_LLAMA_SDIST to it)")
            os.replace(got, target)
        path = target
    actual = _sha256(path)
    if actual != SOURCE_SHA256:
        raise BuildError(f"{path}: sha256 {actual} does not match the pinned {SOURCE_SHA256} "
                         f"for {SOURCE_PACKAGE} {SOURCE_VERSION}; refusing to build from it")
    return path


@contextlib.contextmanager
def _exclusive(lock: Path, what: str, log=print, *, shared: bool = False) -> Iterator[None]:
    """Hold ``lock`` (an advisory file lock) for ``what``: two test workers, two CI jobs or two
    checkouts that want the same build build it once, the second waiting and then reusing it.
    ``shared``: readers of a source tree, which may build side by side but keep it from removal."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"build-llama: waiting for another process to finish {what}")
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unused(lock: Path) -> bool:
    """True when nobody holds ``lock`` (no build at work on what it guards): then it is taken and
    dropped at once, and what it guards may go."""
    if not lock.exists():
        return True
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _tree_lock(tree: Path) -> Path:
    return tree.parent / f".{tree.name}.lock"


def source_tree(log=print) -> Path:
    """The extracted, patched llama.cpp tree of the pinned source (made once, then reused).

    Making a new one (another source or patch) removes the trees of other sources and patches:
    about 180 MB each, and made again in seconds from the cached sdist where an older checkout
    sharing the cache still wants one."""
    tree = llama_cache() / "src" / f"llama.cpp-{SOURCE_VERSION}-{SOURCE_SHA256[:12]}-{patches_digest()[:8]}"
    if (tree / ".complete").is_file():
        return tree
    with _exclusive(tree.parent / ".extract.lock", "extracting the llama.cpp source", log):
        if (tree / ".complete").is_file():
            return tree
        return _extract(tree, log)


def _extract(tree: Path, log=print) -> Path:
    for stale in sorted(tree.parent.glob("llama.cpp-*")):
        if stale.is_dir() and stale.name not in (tree.name, tree.name + ".part") and _unused(_tree_lock(stale)):
            log(f"build-llama: removing the source tree of another source or patch set, {stale.name}")
            shutil.rmtree(stale, ignore_errors=True)
    sdist = fetch_source(log)
    log(f"build-llama: extracting llama.cpp from {sdist.name}")
    partial = tree.with_name(tree.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            if member.name.startswith(VENDOR_PREFIX) and member.name != VENDOR_PREFIX:
                member.name = member.name[len(VENDOR_PREFIX):]
                members.append(member)
        try:
            extract_all(tar, partial, members)
        except UnsafeArchive as exc:
            raise BuildError(f"{sdist}: refusing to extract: {exc}") from exc
    apply_patches(partial, log)
    (partial / ".complete").write_text(SOURCE_SHA256 + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    os.replace(partial, tree)
    return tree


def apply_patches(tree: Path, log=print) -> None:
    """``git apply`` each patch to the files of ``tree``, with an empty repository of its own: the
    sdist's tree holds a ``.git`` link into its maker's checkout, which git would follow and fail on,
    and a repository around the cache must not count either."""
    for patch in PATCHES:
        log(f"build-llama: applying {patch.name}")
        with tempfile.TemporaryDirectory(prefix="mirdeck-patch-git-") as git_dir:
            try:
                done = subprocess.run(["git", "init", "-q", "--bare", git_dir], capture_output=True, text=True)
                if done.returncode == 0:
                    done = subprocess.run(["git", "apply", "-p1", "--whitespace=nowarn", str(patch)], cwd=tree,
                                          env={**os.environ, "GIT_DIR": git_dir, "GIT_WORK_TREE": str(tree)},
                                          capture_output=True, text=True)
            except FileNotFoundError:
                raise BuildError("git is needed to apply mirdeck's patches to llama.cpp (apt-get install git)") \
                    from None
        if done.returncode != 0:
            raise BuildError(f"{patch} does not apply to llama.cpp {SOURCE_VERSION}: {done.stderr.strip()[-800:]}")


def read_stamp(build_dir: Path) -> dict | None:
    try:
        stamp = json.loads((build_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if all((build_dir / "bin" / name).is_file() for name in TARGETS):
        return stamp
    return None


def _link(plan: BuildPlan, build_dir: Path) -> Path:
    links = bin_link_dir()
    links.mkdir(parents=True, exist_ok=True)
    link = links / plan.variant
    tmp = links / f".{plan.variant}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(build_dir)
    os.replace(tmp, link)
    return link


def build(plan: BuildPlan, *, jobs: int | None = None, log=print) -> Path:
    """Build (or reuse) ``plan``; returns the folder holding ``bin/`` and ``stamp.json``."""
    out = llama_cache() / plan.key
    if (read_stamp(out) or {}).get("key") == plan.key:
        log(f"build-llama: reusing {out} (stamp matches)")
        _link(plan, out)
        return out
    missing = missing_toolkit(plan.variant)  # before anything is written, the lock included
    if missing:
        raise BuildError(missing)
    with _exclusive(llama_cache() / f".{plan.key}.lock", f"building {plan.key}", log):
        if (read_stamp(out) or {}).get("key") == plan.key:  # the other process built it meanwhile
            log(f"build-llama: reusing {out} (built meanwhile)")
            _link(plan, out)
            return out
        return _build(plan, out, jobs, log)


def _build(plan: BuildPlan, out: Path, jobs: int | None, log=print) -> Path:
    tree = source_tree(log)
    with _exclusive(_tree_lock(tree), "removing this source tree", log, shared=True):  # not removed under us
        return _compile(plan, out, tree, jobs, log)


def _compile(plan: BuildPlan, out: Path, tree: Path, jobs: int | None, log=print) -> Path:
    work = out / "build"
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    log(f"build-llama: building {', '.join(TARGETS)} ({plan.variant}) in {work} with {jobs} jobs")
    configure = ["cmake", "-S", str(tree), "-B", str(work), *plan.flags]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    _run(configure, out / "build.log")
    _run(["cmake", "--build", str(work), "--target", *TARGETS, "-j", str(jobs)], out / "build.log")
    bindir = out / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in TARGETS:
        shutil.copy2(work / "bin" / name, bindir / name)
    stamp = {
        "key": plan.key, "package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "sha256": SOURCE_SHA256,
        "patches": [p.name for p in PATCHES], "patches_sha256": patches_digest(),
        "variant": plan.variant, "flags": list(plan.flags), "targets": list(TARGETS),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1), "jobs": jobs,
        "machine": platform.machine(), "compiler": _compiler_version(),
        "binaries": {name: _sha256(bindir / name) for name in TARGETS},
    }
    (out / (STAMP + ".tmp")).write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(out / (STAMP + ".tmp"), out / STAMP)
    # The object files are ~hundreds of MB and a matching stamp means they are never needed again.
    shutil.rmtree(work, ignore_errors=True)
    _link(plan, out)
    log(f"build-llama: done in {stamp['build_seconds']} s -> {bindir}")
    return out


BUSY_S = 3600.0


def _newest_mtime(path: Path) -> float:
    return max([path.stat().st_mtime] + [f.stat().st_mtime for f in path.iterdir()])


def _size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def prune(log=print) -> int:
    """Remove the builds this checkout can never reuse: those of another llama.cpp source or patch
    set (their stamp says which), and unfinished ones (no stamp). Builds of this source with other
    flags (another variant, other GPU targets) stay. Returns the bytes freed."""
    cache = llama_cache()
    freed = 0
    if not cache.is_dir():
        return 0
    for build_dir in sorted(p for p in cache.iterdir() if p.is_dir() and p.name.split("-", 1)[0] in VARIANTS):
        stamp = read_stamp(build_dir)
        if stamp is not None and (stamp.get("sha256"), stamp.get("patches_sha256")) == (SOURCE_SHA256,
                                                                                        patches_digest()):
            continue
        if stamp is None and (not _unused(cache / f".{build_dir.name}.lock")
                              or time.time() - _newest_mtime(build_dir) < BUSY_S):
            log(f"build-llama: keeping {build_dir.name}: unfinished, and being built or written to in the last "
                "hour (another build may be running)")
            continue
        why = "unfinished" if stamp is None else f"llama.cpp {stamp.get('version')} with other patches"
        size = _size_of(build_dir)
        log(f"build-llama: removing {build_dir.name} ({why}, {size / 2 ** 20:,.0f} MiB)")
        shutil.rmtree(build_dir, ignore_errors=True)
        freed += size
    current = f"llama.cpp-{SOURCE_VERSION}-{SOURCE_SHA256[:12]}-{patches_digest()[:8]}"
    for tree in sorted((cache / "src").glob("llama.cpp-*")):
        if tree.is_dir() and tree.name != current and _unused(_tree_lock(tree)):
            size = _size_of(tree)
            log(f"build-llama: removing the source tree {tree.name} ({size / 2 ** 20:,.0f} MiB)")
            shutil.rmtree(tree, ignore_errors=True)
            freed += size
    return freed


def missing_toolkit(variant: str) -> str | None:
    """What a GPU build lacks before it starts (CMake's own words come after minutes and name a target)."""
    if variant == "cuda":
        nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")
        if not nvcc:
            return ("a CUDA build needs the CUDA toolkit (nvcc and cuBLAS), and no nvcc was found on PATH, in "
                    "$CUDACXX or in /usr/local/cuda/bin: install the toolkit from NVIDIA (or Debian's "
                    "nvidia-cuda-toolkit), or build --variant cpu")
        roots = [os.environ.get(v) for v in ("CUDA_PATH", "CUDA_HOME", "CUDAToolkit_ROOT")]
        roots += [str(Path(nvcc).resolve().parent.parent), *CUDA_SYSTEM_ROOTS]
        headers = [Path(r) / sub / "cublas_v2.h" for r in roots if r
                   for sub in ("include", "targets/x86_64-linux/include", "targets/sbsa-linux/include")]
        if not any(h.is_file() for h in headers):
            looked = ", ".join(sorted({str(h.parent) for h in headers if h.parent.is_dir()})) or "none"
            return (f"a CUDA build needs cuBLAS, and {nvcc}'s toolkit has no cublas_v2.h (looked in "
                    f"{looked}): install the toolkit's cuBLAS "
                    "development files (libcublas-dev), or set CUDA_PATH to a toolkit that has them")
    if variant == "rocm":
        rocm = os.environ.get("ROCM_PATH") or "/opt/rocm"
        if not (shutil.which("hipconfig") or (Path(rocm) / "bin" / "hipconfig").is_file()):
            return (f"a ROCm build needs the ROCm HIP SDK (hipconfig, hipcc, hipBLAS), and none was found on PATH "
                    f"or in {rocm}/bin: install ROCm (AMD's amdgpu-install --usecase=hip), or build --variant cpu")
    return None


def _run(cmd: list[str], logfile: Path) -> None:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-30:]
        raise BuildError(f"{cmd[0]} failed (rc {done.returncode}); last lines of {logfile}:\n" + "\n".join(tail))


def _compiler_version() -> str:
    try:
        return subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def find_binaries(variant: str = "cpu") -> dict | None:
    """Which built binaries ``variant`` would use, and how they were built; None if not built.

    ``$MIRDECK_LLAMA_BIN_DIR`` (a folder with both tools) wins over the bundled build.
    """
    override = os.environ.get("MIRDECK_LLAMA_BIN_DIR")
    if override:
        folder = Path(override)
        found = {name: str(folder / name) for name in TARGETS if (folder / name).is_file()}
        return {"source": "MIRDECK_LLAMA_BIN_DIR", "dir": str(folder), "binaries": found, "stamp": None}
    link = bin_link_dir() / variant
    if not link.exists():
        return None
    target = link.resolve()
    stamp = read_stamp(target)
    if stamp is None:
        return None
    return {"source": "bundled", "dir": str(target / "bin"), "link": str(link),
            "binaries": {name: str(target / "bin" / name) for name in TARGETS}, "stamp": stamp}


def describe(variant: str = "cpu") -> str:
    """One paragraph for ``mirdeck doctor``: which llama.cpp binary is used and how it was built."""
    info = find_binaries(variant)
    if info is None:
        return (f"llama.cpp ({variant}): not built. Run: bin/build-llama --variant {variant} "
                f"(about 10 minutes on 2 cores; only needed for the flamingo_gguf backend)")
    if info["stamp"] is None:
        return f"llama.cpp: {info['dir']} (from $MIRDECK_LLAMA_BIN_DIR; how it was built is unknown)"
    s = info["stamp"]
    flags = " ".join(f for f in s["flags"] if f not in COMMON_FLAGS) or "(portable CPU)"
    return (f"llama.cpp ({s['variant']}): {info['dir']}\n"
            f"  source {s['package']} {s['version']} (sha256 {s['sha256'][:12]}...), built {s['built_at']} "
            f"in {s['build_seconds']} s with {s['compiler']}\n  variant flags: {flags}\n"
            f"  mirdeck patches: {', '.join(s.get('patches') or []) or 'none'}")


def describe_for_profile(name: str | None = None) -> str:
    """``describe`` for the build the profile asks for (``[llama] build``; the default profile if None)."""
    from tui.run.profiles import ProfileError, default_name
    from tui.run.profiles import load as load_profile
    try:
        profile = load_profile(name or default_name())
    except ProfileError as exc:
        return f"llama.cpp: cannot read the profile: {exc}"
    return describe(str(profile.llama.get("build", "cpu")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/build-llama", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", help="read [llama] build and gpu_targets from this profile")
    parser.add_argument("--variant", choices=VARIANTS, help="build variant (default: the profile's, else cpu)")
    parser.add_argument("--gpu-targets", help="ROCm GPU targets (gfx1201) or CUDA compute capabilities (89, 90; "
                                               "default for CUDA: ggml's portable list)")
    parser.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    parser.add_argument("--source-only", action="store_true",
                        help="only fetch, verify and extract the source; print its folder")
    parser.add_argument("--print-dir", action="store_true", help="print the build folder and exit 0 if built")
    parser.add_argument("--prune", action="store_true",
                        help="remove cached builds and source trees of other llama.cpp sources or patch sets "
                             "(and unfinished builds); builds of this source with other flags stay")
    args = parser.parse_args(argv)
    try:
        if args.prune:
            freed = prune()
            print(f"build-llama: freed {freed / 2 ** 20:,.0f} MiB in {llama_cache()}")
            return 0
        if args.source_only:
            print(source_tree(log=lambda m: print(m, file=sys.stderr)))
            return 0
        if args.profile and not args.variant:
            plan = plan_for_profile(args.profile)
        else:
            plan = plan_for(args.variant or "cpu", args.gpu_targets)
        if args.print_dir:
            out = llama_cache() / plan.key
            print(out)
            return 0 if read_stamp(out) else 1
        build(plan, jobs=args.jobs)
        print(describe(plan.variant))
        return 0
    except BuildError as exc:
        print(f"build-llama: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
