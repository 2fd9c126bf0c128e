"""Decoding, resampling and the shared PCM files that let a track be decoded once per run.

The decode worker writes each needed (source, sample rate) as a float32 ``.npy`` of shape
``[frames, channels]``; every other worker maps the same file read-only instead of decoding again.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from backends.protocol import BadInput

# libsndfile reads these natively; anything else goes through ffmpeg.
SNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def decode_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 ``[frames, channels]`` at its own sample rate.

    Raises ``BadInput`` naming the file and the problem for anything that is not usable audio.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadInput(f"{path}: cannot read file ({exc.strerror})") from exc
    if size == 0:
        raise BadInput(f"{path}: file is empty (0 bytes)")
    data, rate = None, None
    if path.suffix.lower() in SNDFILE_SUFFIXES:
        import soundfile

        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile's errors are RuntimeError/LibsndfileError
            if path.suffix.lower() in {".wav", ".flac", ".aiff", ".aif"}:
                raise BadInput(f"{path}: not decodable audio ({_first_line(exc)})") from exc
    if data is None:
        data, rate = _decode_with_ffmpeg(path)
    if data.shape[0] == 0:
        raise BadInput(f"{path}: contains no audio frames")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argmax(bad.any(axis=1)))
        raise BadInput(f"{path}: {int(bad.sum())} non-finite samples (NaN or infinity), "
                       f"the first at {first / rate:.3f} s")
    return np.ascontiguousarray(data), int(rate)


def probe_duration(path: str | os.PathLike) -> float | None:
    """Seconds of audio in a file from its header (libsndfile, else ffprobe), without decoding it;
    None when neither can tell (the decode step reports such a file properly later)."""
    path = Path(path)
    if path.suffix.lower() in SNDFILE_SUFFIXES:
        import soundfile

        try:
            info = soundfile.info(str(path))
            if info.samplerate > 0 and info.frames > 0:
                return info.frames / info.samplerate
        except Exception:  # libsndfile could not read it; ffprobe may
            pass
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    proc = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                           "--", str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        seconds = float(proc.stdout.strip())
    except ValueError:
        return None
    return seconds if proc.returncode == 0 and seconds > 0 else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _probe_with_ffmpeg(path: Path) -> tuple[int, int]:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise BadInput(f"{path}: decoding {path.suffix or 'this file'} needs ffmpeg, which is not "
                       "installed (Debian: apt-get install ffmpeg)")
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels", "-of", "csv=p=0", "--", str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    fields = proc.stdout.strip().split(",")
    if proc.returncode != 0 or len(fields) < 2 or not all(f.strip().isdigit() for f in fields[:2]):
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no audio stream"
        raise BadInput(f"{path}: not decodable audio ({reason})")
    return int(fields[0]), int(fields[1])


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    rate, channels = _probe_with_ffmpeg(path)
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
         "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BadInput(f"{path}: ffmpeg could not decode it ({reason[-1] if reason else 'unknown error'})")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    usable = data.size - data.size % channels
    return data[:usable].reshape(-1, channels).copy(), rate


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality resampling of ``[frames, channels]`` float32 with soxr."""
    if rate == target:
        return data
    import soxr

    return np.ascontiguousarray(soxr.resample(data, rate, target, quality="HQ"), dtype=np.float32)


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average of the channels, shape ``[frames]`` float32 (the same values as
    ``data.mean(axis=1, dtype=np.float32)``)."""
    channels = data.shape[1]
    if channels == 1:
        return data[:, 0]
    if channels >= 8:  # NumPy sums 8 or more values pairwise; keep its order there
        return data.mean(axis=1, dtype=np.float32)
    # NumPy's mean over a short row axis costs several times this column sum (docs/performance.md);
    # below 8 values it adds in order too, so the result is identical.
    total = np.add(data[:, 0], data[:, 1], dtype=np.float32)
    for c in range(2, channels):
        total += data[:, c]
    total /= np.float32(channels)
    return total


def write_pcm(path: str | os.PathLike, data: np.ndarray) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    np.save(tmp, data, allow_pickle=False)
    os.replace(tmp + ".npy", path)


def load_pcm(path: str | os.PathLike) -> np.ndarray:
    """The shared PCM as a read-only memory map, shape ``[frames, channels]``."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
