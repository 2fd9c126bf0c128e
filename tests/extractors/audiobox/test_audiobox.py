"""The audiobox backend: AudioBox Aesthetics scores with a random-weight stand-in checkpoint.

The stand-in has the real class and file format (a 2-layer, 64-dim WavLM unless marked slow), so
these tests prove loading, windowing, weighting, batching and the engine plumbing; its scores
mean nothing. Ground truth is the package's own predictor on the same tensors, or sums of
per-window predictions built from the windowing rule.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from backends.protocol import BadInput
from tests.support.audiobox_standin import wavlm_cfg, write_checkpoint
from tests.support.helpers import events_named, info_of, run_engine, write_track
from tui.paths import ROOT

torch = pytest.importorskip("torch")
am = pytest.importorskip("backends.extractors.audiobox.model")

RATE = am.SAMPLE_RATE
KEYS = ("content_enjoyment", "content_usefulness", "production_complexity", "production_quality")


def varied_audio(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """[channels, samples] at 16 kHz whose content changes every few seconds (noise, tones,
    clicks, quiet), so each 10 s window gets a different prediction."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    mono = np.zeros(n, dtype=np.float64)
    for i, start in enumerate(range(0, n, 4 * RATE)):
        part = slice(start, min(n, start + 4 * RATE))
        kind = (i + seed) % 4
        if kind == 0:
            mono[part] = 0.3 * rng.standard_normal(part.stop - part.start)
        elif kind == 1:
            mono[part] = 0.5 * np.sin(2 * np.pi * (220 + 110 * i) * t[part])
        elif kind == 2:
            mono[part] = (np.arange(part.stop - part.start) % (RATE // 4) < 200) * 0.8
        else:
            mono[part] = 0.02 * rng.standard_normal(part.stop - part.start)
    wav = np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)])
    return wav.astype(np.float32)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_checkpoint(folder / "audiobox-aesthetics" / "checkpoint.pt", size="small")
    return folder


@pytest.fixture(scope="module")
def scorer(models_dir):
    return am.load_scorer(models_dir / "audiobox-aesthetics" / "checkpoint.pt")


@pytest.fixture
def package_predictor(models_dir, monkeypatch):
    """The package's own ``AesPredictor`` (its ``forward`` is the reference).

    ``infer.py`` imports torchaudio at the top, which cannot be imported beside the CPU torch;
    for this fixture only it sees a stand-in whose ``resample`` refuses to change the rate, so
    the test feeds 16 kHz tensors and no resampling happens.
    """
    def resample(wav, orig_freq, new_freq):
        assert orig_freq == new_freq, "the parity test must feed 16 kHz audio"
        return wav

    stub = types.ModuleType("torchaudio")
    stub.functional = types.SimpleNamespace(resample=resample)
    monkeypatch.setitem(sys.modules, "torchaudio", stub)
    monkeypatch.delitem(sys.modules, "audiobox_aesthetics.infer", raising=False)
    from audiobox_aesthetics import infer
    from audiobox_aesthetics.model import aes

    monkeypatch.setattr(aes, "DEFAULT_AUDIO_CFG", aes.WavLMConfig(wavlm_cfg("small")))
    predictor = infer.AesPredictor(checkpoint_pth=str(models_dir / "audiobox-aesthetics" / "checkpoint.pt"),
                                   precision="32")
    yield lambda wavs: predictor.forward([{"path": torch.from_numpy(np.ascontiguousarray(w)),
                                           "sample_rate": RATE} for w in wavs])
    sys.modules.pop("audiobox_aesthetics.infer", None)


def close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return all(abs(a[k] - b[k]) <= tol for k in am.AXES)


# -- scoring core ------------------------------------------------------------------------------

def test_matches_package_forward_on_several_tracks(scorer, package_predictor):
    """Same tensors through the package's predictor (all windows in one batch) and through ours
    (micro-batches of 2, windows of different tracks sharing a batch): equal to 1e-5."""
    wavs = [varied_audio(25, seed=1), varied_audio(0.5, seed=2), np.zeros((2, 12 * RATE), np.float32),
            varied_audio(31.3, channels=1, seed=3)]
    ours = am.score(scorer, [am.ChannelsFirst(w) for w in wavs], micro_batch=2)
    theirs = package_predictor(wavs)
    for mine, ref in zip(ours, theirs):
        assert close(mine, ref), (mine, ref)
    # The tracks are told apart: a mix-up of items would not pass the comparison above.
    assert len({round(r["CE"], 3) for r in ours}) == len(wavs)


def test_micro_batch_size_does_not_change_scores(scorer):
    items = [am.ChannelsFirst(varied_audio(s, seed=i)) for i, s in enumerate((25, 0.5, 13))]
    reference = am.score(scorer, items, micro_batch=1)
    for size in (2, 64):
        for got, ref in zip(am.score(scorer, items, micro_batch=size), reference):
            assert close(got, ref), (size, got, ref)
    alone = [am.score(scorer, [item], micro_batch=5)[0] for item in items]
    for got, ref in zip(alone, reference):
        assert close(got, ref)


def test_length_weighting_of_a_25_second_track(scorer):
    """Windows 0-10 s, 10-20 s and 20-25 s weigh 1, 1 and 0.5."""
    wav = varied_audio(25, seed=4)
    parts = [wav[:, :10 * RATE], wav[:, 10 * RATE:20 * RATE], wav[:, 20 * RATE:]]
    per_window = am.score(scorer, [am.ChannelsFirst(p) for p in parts], micro_batch=3)
    [whole] = am.score(scorer, [am.ChannelsFirst(wav)], micro_batch=3)
    for axis in am.AXES:
        p = [w[axis] for w in per_window]
        weighted = (p[0] + p[1] + 0.5 * p[2]) / 2.5
        unweighted = sum(p) / 3
        assert whole[axis] == pytest.approx(weighted, abs=1e-5)
        assert abs(weighted - unweighted) > 1e-3, "windows too alike for the test to tell weighting apart"
    assert [w.weight for w in am.windows([25 * RATE])] == [1.0, 1.0, 0.5]


def test_samples_channels_layout_is_rejected(scorer):
    wav = varied_audio(3)
    with pytest.raises(BadInput, match=r"looks like \[samples, channels\]"):
        am.ChannelsFirst(wav.T, label="song.flac")
    with pytest.raises(BadInput, match="song.flac"):
        am.ChannelsFirst(wav.T, label="song.flac")
    with pytest.raises(BadInput, match="dimensions"):
        am.ChannelsFirst(wav[0], label="song.flac")


def test_silence_and_half_second_give_model_scores(scorer, package_predictor):
    silence = np.zeros((2, 30 * RATE), np.float32)
    short = varied_audio(0.5, seed=5)
    ours = am.score(scorer, [am.ChannelsFirst(silence), am.ChannelsFirst(short)], micro_batch=4)
    theirs = package_predictor([silence, short])
    for mine, ref in zip(ours, theirs):
        assert all(math.isfinite(v) for v in mine.values())
        assert close(mine, ref)


def test_empty_and_non_finite_audio_are_bad_input(scorer):
    with pytest.raises(BadInput, match="no audio samples"):
        am.score(scorer, [am.ChannelsFirst(np.zeros((1, 0), np.float32))], micro_batch=1)
    wav = varied_audio(12)
    wav[0, 11 * RATE] = np.nan
    with pytest.raises(BadInput, match="non-finite samples near 10.0 s"):
        am.score(scorer, [am.ChannelsFirst(wav)], micro_batch=1)


def test_micro_batch_from_memory_budget():
    assert am.micro_batch_for(1.6e9, "float32") == 10
    assert am.micro_batch_for(1e6, "float32") == 1  # a tiny budget still makes progress
    assert am.micro_batch_for(1e15, "float32") == am.MAX_MICRO_BATCH
    assert am.micro_batch_for(1.6e9, "bf16") > am.micro_batch_for(1.6e9, "float32")


def test_config_is_read_from_the_checkpoint_shapes(scorer):
    cfg = scorer.wavlm_cfg
    assert (cfg["encoder_layers"], cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"],
            cfg["encoder_attention_heads"], cfg["conv_pos"], cfg["conv_pos_groups"]) == (2, 64, 128, 4, 16, 4)
    assert eval(cfg["conv_feature_layers"]) == eval(wavlm_cfg("small")["conv_feature_layers"])


@pytest.mark.slow
def test_real_size_checkpoint_loads_as_wavlm_base_and_matches_package(tmp_path, monkeypatch):
    """The 12-layer, 768-dim stand-in: the configuration read from its shapes is the package's
    WavLM Base exactly, and the scores match the package's forward."""
    from audiobox_aesthetics.model.aes import DEFAULT_AUDIO_CFG

    path = write_checkpoint(tmp_path / "audiobox-aesthetics" / "checkpoint.pt", size="real")
    real = am.load_scorer(path)
    assert real.wavlm_cfg == DEFAULT_AUDIO_CFG.__dict__ | {
        "conv_feature_layers": real.wavlm_cfg["conv_feature_layers"]}
    assert eval(real.wavlm_cfg["conv_feature_layers"]) == eval(DEFAULT_AUDIO_CFG.conv_feature_layers)
    assert 90e6 < real.parameters < 100e6  # WavLM Base is ~94.7 M parameters

    monkeypatch.setitem(sys.modules, "torchaudio", types.SimpleNamespace(
        functional=types.SimpleNamespace(resample=lambda w, orig_freq, new_freq: w)))
    monkeypatch.delitem(sys.modules, "audiobox_aesthetics.infer", raising=False)
    from audiobox_aesthetics import infer

    wav = varied_audio(12.5, seed=6)
    [theirs] = infer.AesPredictor(checkpoint_pth=str(path), precision="32").forward(
        [{"path": torch.from_numpy(wav), "sample_rate": RATE}])
    sys.modules.pop("audiobox_aesthetics.infer", None)
    [ours] = am.score(real, [am.ChannelsFirst(wav)], micro_batch=1)
    assert close(ours, theirs), (ours, theirs)


# -- memory ----------------------------------------------------------------------------------

PEAK_RSS_SCRIPT = r"""
import json, sys
from backends.extractors.audiobox import model as am
scorer = am.load_scorer(sys.argv[1])
def peak():
    from backends.process_memory import peak_rss_bytes
    return peak_rss_bytes()
out = {}
for name in sys.argv[2:]:
    am.score(scorer, [am.NpyFrames(name)], micro_batch=4)
    out[name] = peak()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_thirty_minute_track_keeps_memory_flat(models_dir, tmp_path):
    """Peak RSS after scoring a 30-minute track stays within a few tens of MB of that after a
    1-minute one; holding the track (230 MB of PCM, 115 MB as mono) would add far more."""
    rng = np.random.default_rng(7)
    files = []
    for minutes in (1, 30):
        path = tmp_path / f"{minutes}min.npy"
        pcm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(minutes * 60 * RATE, 2))
        for start in range(0, pcm.shape[0], 60 * RATE):
            block = (0.2 * rng.standard_normal((min(60 * RATE, pcm.shape[0] - start), 2))).astype(np.float32)
            pcm[start:start + block.shape[0]] = block
        pcm.flush()
        del pcm
        files.append(str(path))
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT,
                          str(models_dir / "audiobox-aesthetics" / "checkpoint.pt"), *files],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    growth = peaks[files[1]] - peaks[files[0]]
    print(f"peak RSS after 1 min: {peaks[files[0]] / 1e6:.0f} MB, after 30 min: {peaks[files[1]] / 1e6:.0f} MB")
    assert growth < 60e6, f"peak RSS grew by {growth / 1e6:.0f} MB over a 30-minute track"


# -- through the real engine -------------------------------------------------------------------

@pytest.fixture
def engine_models(models_dir, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(models_dir))
    return models_dir


def test_engine_writes_scores_that_match_the_package(engine_models, tmp_path, package_predictor):
    from backends.audio import decode_file, resample

    dataset = tmp_path / "dataset"
    rate = 44100
    noisy = resample(varied_audio(25, seed=8).T.copy(), RATE, rate)
    tracks = {
        "Artist - Varied, \"25 s\" ünï": write_track(dataset, "Artist - Varied, \"25 s\" ünï", noisy, rate),
        "Silence": write_track(dataset, "Silence", np.zeros((10 * rate, 2), np.float32), rate),
        "Half second": write_track(dataset, "Half second", noisy[: rate // 2], rate, fmt="wav"),
    }
    events, _ = run_engine(dataset, only=["audiobox"], module_options={"audiobox": {"micro_batch": 2}})
    assert not events_named(events, "module_failed"), events_named(events, "module_failed")
    for name, folder in tracks.items():
        info = info_of(folder)
        assert set(KEYS) <= set(info), (name, info)
        assert all(math.isfinite(info[k]) for k in KEYS)
        prov = info["_mirdeck"]["audiobox"]
        assert prov["status"] == "ok" and prov["micro_batch"] == 2 and prov["precision"] == "float32"
        assert prov["model"] == "facebook/audiobox-aesthetics" and len(prov["model_sha256"]) == 64
        # Reference: the package's forward on the same decode + 16 kHz soxr resampling, mixed to mono by it.
        data, file_rate = decode_file(next(folder.glob("full_mix.*")))
        [ref] = package_predictor([resample(data, file_rate, RATE).T.copy()])
        assert abs(info["content_enjoyment"] - ref["CE"]) < 1e-5
        assert abs(info["production_quality"] - ref["PQ"]) < 1e-5


def test_engine_without_the_model_reports_model_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "empty"))
    dataset = tmp_path / "dataset"
    folder = write_track(dataset, "Song", varied_audio(3).T.copy(), RATE)
    events, _ = run_engine(dataset, only=["audiobox"])
    failed = events_named(events, "module_failed")
    assert failed and failed[0].kind == "model_missing"
    assert "mirdeck models fetch audiobox-aesthetics" in failed[0].message
    info = info_of(folder)
    assert not set(KEYS) & set(info), "no score may be written without the model"
    assert info["_mirdeck"]["audiobox"]["error"]["kind"] == "model_missing"


@pytest.mark.parametrize("damage", ["truncated", "not_torch", "wrong_model"])
def test_corrupt_checkpoint_is_reported_not_scored(models_dir, tmp_path, monkeypatch, damage):
    good = (models_dir / "audiobox-aesthetics" / "checkpoint.pt").read_bytes()
    target = tmp_path / "weights" / "audiobox-aesthetics" / "checkpoint.pt"
    target.parent.mkdir(parents=True)
    if damage == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif damage == "not_torch":
        target.write_bytes(b"<html>404 Not Found</html>")
    else:
        torch.save({"state_dict": {"model.x": torch.zeros(1)}, "model_cfg": {}, "target_transform": {}}, target)
    with pytest.raises(am.CheckpointError, match=str(target.name)):
        am.load_scorer(target)
    if damage != "truncated":
        return
    # Through the engine once: the worker refuses to start and every track says why.
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "weights"))
    dataset = tmp_path / "dataset"
    folder = write_track(dataset, "Song", varied_audio(3).T.copy(), RATE)
    events, _ = run_engine(dataset, only=["audiobox"])
    failed = events_named(events, "module_failed")
    assert failed and failed[0].kind == "model_missing"
    assert "damaged" in failed[0].message and "mirdeck models fetch audiobox-aesthetics" in failed[0].message
    assert not set(KEYS) & set(info_of(folder))


def test_options_are_validated(scorer):
    from backends.extractors.audiobox import _options
    from backends.protocol import BackendError

    assert _options({}, "cpu") == (am.micro_batch_for(1.5e9), "float32")
    assert _options({"micro_batch": 3, "precision": "bf16"}, "cuda") == (3, "bf16")
    assert _options({"precision": "bf16"}, "cpu")[1] == "float32"  # bf16 applies on a GPU only
    for bad in ({"micro_batch": 0}, {"micro_batch": "4"}, {"memory_budget_gb": -1}, {"precision": "fp8"}):
        with pytest.raises(BackendError):
            _options(bad, "cpu")


class RunsOutOfMemoryAbove:
    """The real model, refusing batches larger than ``limit`` windows like a full GPU would."""

    def __init__(self, model, limit: int):
        self.model, self.limit, self.sizes = model, limit, []

    def __getattr__(self, name):  # precision / enable_autocast live on the real model
        return getattr(self.model, name)

    def __setattr__(self, name, value):
        if name in ("precision", "enable_autocast"):
            setattr(self.model, name, value)
        else:
            object.__setattr__(self, name, value)

    def __call__(self, batch):
        self.sizes.append(batch["wav"].shape[0])
        if batch["wav"].shape[0] > self.limit:
            raise torch.OutOfMemoryError("stand-in: batch too large")
        return self.model(batch)


def test_out_of_memory_retries_with_smaller_micro_batches(scorer, tmp_path):
    from dataclasses import replace

    from backends.audio import write_pcm
    from backends.extractors.audiobox import AudioboxAesthetics
    from backends.track import Source, Track

    wav = varied_audio(45, seed=9)
    write_pcm(tmp_path / "mix@16000.npy", wav.T.copy())
    track = Track(request_id="t", folder=tmp_path, name="t", options={"micro_batch": 8},
                  sources={"mix": Source(name="mix", path="song.flac", sample_rate=RATE, channels=2,
                                         frames=wav.shape[1], pcm={"16000": str(tmp_path / "mix@16000.npy")})})
    limited = RunsOutOfMemoryAbove(scorer.model, limit=2)
    extractor = AudioboxAesthetics(replace(scorer, model=limited), device="cpu")
    features = extractor.process(track).features
    [expected] = am.score(scorer, [am.ChannelsFirst(wav)], micro_batch=1)
    assert features["content_enjoyment"] == pytest.approx(expected["CE"], abs=1e-5)
    assert extractor.model_provenance["micro_batch"] == 2
    assert limited.sizes == [5, 4, 2, 2, 1]  # 5 windows: tried 8 (a batch of 5), then 4, then 2

    never = RunsOutOfMemoryAbove(scorer.model, limit=0)
    from backends.protocol import OutOfMemory
    with pytest.raises(OutOfMemory, match="song.flac"):
        AudioboxAesthetics(replace(scorer, model=never), device="cpu").process(track)
