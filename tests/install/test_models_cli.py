"""`mirdeck models` as a user runs it: which entries a fetch checks by hash, and `verify` on real files."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from tui.paths import ROOT


def mirdeck(*args, models_dir):
    env = {**os.environ, "MIRDECK_MODELS_DIR": str(models_dir)}
    return subprocess.run([sys.executable, "-m", "tui.cli", "models", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=120)


def entry_block(stdout: str, name: str) -> str:
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line[2:].startswith(name + " "))
    return "\n".join(lines[at:at + 2])


def test_list_says_how_each_entry_is_checked(tmp_path):
    result = mirdeck(models_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "checked by: sha256 pinned" in entry_block(result.stdout, "discogs-effnet-bs64-1")
    assert "checked by: size pinned" in entry_block(result.stdout, "danceability-vggish-audioset-1")
    assert "checked by: not pinned" in entry_block(result.stdout, "music_flamingo_mmproj")
    assert "revision 'main' not pinned" in entry_block(result.stdout, "music_flamingo_hf")


def test_verify_catches_a_same_size_file_with_other_bytes(tmp_path):
    assert mirdeck("verify", models_dir=tmp_path).stdout.count("not installed") >= 10
    fake = tmp_path / "essentia" / "genre_discogs400-discogs-effnet-1.pb"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(bytes(2057977))  # the pinned length, so `list` calls it installed
    listing = mirdeck(models_dir=tmp_path)
    assert entry_block(listing.stdout, "genre_discogs400-discogs-effnet-1").startswith("✓")
    result = mirdeck("verify", "genre_discogs400-discogs-effnet-1", models_dir=tmp_path)
    assert result.returncode == 1
    got = hashlib.sha256(bytes(2057977)).hexdigest()
    assert (f"✗ genre_discogs400-discogs-effnet-1: {fake}: sha256 {got}, "
            "expected 3885ba078a35249af94b8e5e4247689afac40deca4401a4bc888daf5a579c01c") in result.stdout
    unknown = mirdeck("verify", "nope", models_dir=tmp_path)
    assert unknown.returncode == 2 and "unknown models: nope" in unknown.stderr
