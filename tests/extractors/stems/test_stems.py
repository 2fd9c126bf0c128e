"""The stems module: Demucs separation as a module of the pipeline, through the real engine.

Weights cannot be downloaded here, so two stand-ins go through the code path real weights take
(a checkpoint in Demucs' own format, named by its sha256 prefix, loaded by demucs' LocalRepo):
- the real ``HTDemucs`` class, small and with random weights: its stems are noise, but their files,
  rates, lengths and the modules that read them are real;
- a model whose answer is known (every stem = a fixed gain × the mix), which checks everything around
  the network against ground truth: normalisation, segments and cross-fades, shifts, resampling,
  channels, FLAC.
The segment loop itself is checked against demucs' own ``apply_model``.
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess

import numpy as np
import pytest
import soundfile

from tests.support import demucs_standin as standin
from tests.support.helpers import events_named, info_of, run_engine, sine, write_track

STEMS = ("drums", "bass", "other", "vocals")
FAST = {"stems": {"shifts": 0}}  # one pass per segment: the random-weight network is slow on 2 cores


def music(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A few partials with a beat and a little noise: something with structure to separate."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t + 0.3)
    mono += 0.3 * np.exp(-((t % 0.5) * 30)) * np.sin(2 * np.pi * 60 * t)
    mono += noise * rng.standard_normal(t.size)
    out = np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def htdemucs_weights(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    standin.install(weights)
    return weights


@pytest.fixture(scope="module")
def scaled_weights(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights-scaled")
    standin.install_scaled_copies(weights)
    return weights


# -- the segment loop against demucs' own ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("shifts, batch", [(0, 2), (2, 3)])
def test_batched_segments_give_what_demucs_apply_model_gives(shifts, batch, monkeypatch):
    import torch
    from demucs.apply import BagOfModels, apply_model

    from backends.extractors.stems import separate

    model = BagOfModels([standin.build(seed=3)])
    mix = torch.from_numpy(music(9.0).T.copy())
    ours = separate.separate(model, mix, segment=7.8, overlap=0.25, shifts=shifts, batch=batch, seed=11)
    # apply_model draws its shifts from the random module; the network draws from it too, so give
    # apply_model a generator of its own, seeded like ours.
    monkeypatch.setattr("demucs.apply.random", random.Random(11))
    theirs = apply_model(model, mix[None], shifts=shifts, overlap=0.25, split=True)[0]
    assert ours.shape == theirs.shape == (4, 2, mix.shape[-1])
    assert torch.allclose(ours, theirs, atol=1e-5 * float(theirs.abs().max()), rtol=0)


# -- ground truth through the engine -------------------------------------------------------------

def test_known_model_gives_gain_times_mix_for_every_layout(tmp_path, scaled_weights, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    layouts = {  # name: (audio [frames, channels], rate)
        "stereo 44k": (music(17.0), 44100),  # three segments, two cross-fades
        "mono 8k": (music(5.0, rate=8000, channels=1, noise=0)[:, 0], 8000),
        "half second": (music(0.5), 44100),
        "silence": (np.zeros((3 * 48000, 2), np.float32), 48000),
    }
    for name, (audio, rate) in layouts.items():
        write_track(ds, name, audio, rate=rate)
    write_track(ds, "six channels", music(2.0, channels=6))
    events, stats = run_engine(ds, only=["stems"])  # Demucs' defaults: shift 1, overlap 0.25
    assert stats["stems"].done == 4 and stats["stems"].failed == 1
    for name, (audio, rate) in layouts.items():
        mix, mix_rate = soundfile.read(ds / name / "full_mix.flac", always_2d=True)
        # Demucs normalises by the mono sum's mean and standard deviation and adds the mean back
        # to every stem: stem = gain x (mix - mean) + mean.
        mean = mix.mean()
        for stem, gain in zip(STEMS, standin.ScaledCopies.GAINS):
            data, stem_rate = soundfile.read(ds / name / f"{stem}.flac", always_2d=True)
            assert stem_rate == mix_rate and data.shape == mix.shape, (name, stem)
            # Away from the edges, where resampling has no neighbours: gain x mix, within what
            # 16-bit input, the round trip through 44.1 kHz and 24-bit FLAC leave.
            edge = int(0.05 * rate) if data.shape[0] > 0.2 * rate else 0
            inner = slice(edge, data.shape[0] - edge)
            tolerance = 2e-3 if rate != 44100 else 1e-4
            expected = gain * (mix[inner] - mean) + mean
            assert np.max(np.abs(data[inner] - expected)) < tolerance, (name, stem)
    prov = info_of(ds / "stereo 44k")["_mirdeck"]["stems"]
    assert prov["status"] == "ok" and prov["model"] == "htdemucs" and prov["demucs"] == "4.1.0"
    assert (prov["segment"], prov["overlap"], prov["shifts"]) == (7.8, 0.25, 1)
    assert prov["stand_in"] == ["955717e8"]  # made-up weights are always marked
    assert {s: prov["stems"][s]["origin"] for s in STEMS} == dict.fromkeys(STEMS, "separated")
    failed = info_of(ds / "six channels")["_mirdeck"]["stems"]["error"]
    assert failed["kind"] == "bad_input" and "6 channels" in failed["message"] and "six channels" in failed["message"]
    assert not any((ds / "six channels" / f"{s}.flac").exists() for s in STEMS)
    progress = [e for e in events_named(events, "module_progress") if e.track == "stereo 44k"]
    assert [p.stage for p in progress][-1] == "segments 3/3" and progress[-1].fraction == 1.0

    _, again = run_engine(ds, only=["stems"])
    assert again["stems"].planned == 1 and again["stems"].skipped == 4  # only the failed track is retried


@pytest.mark.slow
def test_stand_in_htdemucs_stems_feed_loudness_rhythm_and_harmonic_in_the_same_run(tmp_path, htdemucs_weights,
                                                                                    monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(htdemucs_weights))
    ds = tmp_path / "ds"
    write_track(ds, "mix only", music(6.0, seed=1))
    write_track(ds, "own drums", music(6.0, seed=2), stems={"drums": music(6.0, seed=3)})
    users_drums = sha(ds / "own drums" / "drums.flac")
    modules = ["stems", "loudness", "rhythm", "harmonic"]
    events, stats = run_engine(ds, only=modules, module_options=FAST)
    assert all(stats[m].done == 2 and stats[m].failed == 0 for m in modules), {m: stats[m].to_dict() for m in modules}
    for name in ("mix only", "own drums"):
        mix_info = soundfile.info(str(ds / name / "full_mix.flac"))
        for stem in STEMS:
            info = soundfile.info(str(ds / name / f"{stem}.flac"))
            assert (info.samplerate, info.channels, info.frames) == (44100, 2, mix_info.frames)
        keys = info_of(ds / name)
        for key in ("lufs_drums", "lufs_bass", "lufs_other", "lufs_vocals", "onset_density_average_drums",
                    "syncopation_bass", "rhythmic_complexity_other", "harmonic_movement_bass",
                    "harmonic_variance_other"):
            assert key in keys, (name, key)
    assert sha(ds / "own drums" / "drums.flac") == users_drums  # the user's stem is never touched
    prov = info_of(ds / "own drums")["_mirdeck"]
    assert prov["stems"]["stems"]["drums"] == {"file": "drums.flac", "origin": "supplied"}
    assert prov["loudness"]["stems"] == {"bass": "separated", "drums": "supplied", "other": "separated",
                                         "vocals": "separated"}
    assert prov["rhythm"]["stems"] == {"bass": "separated", "drums": "supplied", "other": "separated"}
    assert prov["harmonic"]["stems"] == {"bass": "separated", "other": "separated"}
    assert prov["stems"]["stand_in"] == ["955717e8"]
    # The readers started only after the separation of their track was done.
    order = [(e.name, e.module, e.track) for e in events if e.name in ("module_finished", "module_started")]
    for track in ("mix only", "own drums"):
        finished = order.index(("module_finished", "stems", track))
        assert all(order.index(("module_started", m, track)) > finished for m in modules[1:])

    _, again = run_engine(ds, only=modules, module_options=FAST)
    assert sum(s.planned for s in again.values()) == 0  # a second run does nothing


def test_readers_done_before_stems_existed_run_again_when_they_arrive(tmp_path, scaled_weights, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(330, 4.0))
    run_engine(ds, only=["loudness"])
    assert "lufs_vocals" not in info_of(ds / "A")
    _, stats = run_engine(ds, only=["stems", "loudness"])
    assert stats["loudness"].done == 1
    info = info_of(ds / "A")
    # vocals = 0.4 x mix: 20 log10(0.4) below the mix
    assert info["lufs_vocals"] == pytest.approx(info["lufs"] + 20 * np.log10(0.4), abs=0.05)
    _, third = run_engine(ds, only=["stems", "loudness"])
    assert third["loudness"].planned == 0 and third["stems"].planned == 0


def test_stems_separated_again_by_another_model_bring_their_readers_along(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    standin.install_scaled_copies(weights)  # htdemucs: vocals = 0.4 x mix
    standin.install_scaled_copies(weights, "htdemucs_ft", gain=0.25)  # every stem = 0.25 x mix
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(weights))
    # In the same run: loudness waits for the new stems and reads them.
    same, later = tmp_path / "same-run", tmp_path / "later-run"
    for ds in (same, later):
        write_track(ds, "A", sine(330, 4.0))
        run_engine(ds, only=["stems", "loudness"])
    lufs = info_of(same / "A")["lufs"]
    assert info_of(same / "A")["lufs_vocals"] == pytest.approx(lufs + 20 * np.log10(0.4), abs=0.05)
    ft = {"stems": {"model": "htdemucs_ft", "shifts": 0}}
    _, stats = run_engine(same, only=["stems", "loudness"], overwrite=["stems"], module_options=ft)
    assert stats["stems"].done == 1 and stats["loudness"].done == 1
    assert info_of(same / "A")["lufs_vocals"] == pytest.approx(lufs + 20 * np.log10(0.25), abs=0.05)
    # In a run without the readers: the next run notices that the files changed.
    run_engine(later, only=["stems"], overwrite=["stems"], module_options=ft)
    assert info_of(later / "A")["lufs_vocals"] == pytest.approx(lufs + 20 * np.log10(0.4), abs=0.05)
    _, next_run = run_engine(later, only=["stems", "loudness"], module_options=ft)
    assert next_run["loudness"].planned == 1 and next_run["loudness"].done == 1
    assert next_run["stems"].planned == 0
    assert info_of(later / "A")["lufs_vocals"] == pytest.approx(lufs + 20 * np.log10(0.25), abs=0.05)
    for ds in (same, later):
        _, settled = run_engine(ds, only=["stems", "loudness"], module_options=ft)
        assert sum(s.planned for s in settled.values()) == 0


def test_a_supplied_stem_replaced_by_the_user_is_read_again(tmp_path):
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(220, 3.0), stems={"drums": sine(110, 3.0, amplitude=0.5)})
    run_engine(ds, only=["loudness"])
    before = info_of(ds / "A")["lufs_drums"]
    soundfile.write(ds / "A" / "drums.flac", sine(110, 3.0, amplitude=0.05), 44100)
    _, stats = run_engine(ds, only=["loudness"])
    assert stats["loudness"].planned == 1 and stats["loudness"].done == 1
    assert info_of(ds / "A")["lufs_drums"] == pytest.approx(before - 20, abs=0.1)  # a tenth of the amplitude
    _, again = run_engine(ds, only=["loudness"])
    assert again["loudness"].planned == 0


def test_a_folder_with_all_four_stems_needs_nothing_and_a_missing_model_costs_one_try(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "no-weights"))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(220, 1.0), stems={s: sine(220, 1.0) for s in STEMS})
    write_track(ds, "B", sine(220, 1.0))
    events, stats = run_engine(ds, only=["stems", "loudness"])
    assert stats["stems"].skipped == 1 and stats["stems"].planned == 1
    failure = info_of(ds / "B")["_mirdeck"]["stems"]["error"]
    assert failure["kind"] == "model_missing" and "mirdeck models fetch htdemucs" in failure["message"]
    assert stats["loudness"].done == 2 and info_of(ds / "A")["_mirdeck"]["loudness"]["stems"] == dict.fromkeys(
        sorted(STEMS), "supplied")
    # The separation is retried; the done loudness of B is not redone for stems that never come.
    _, again = run_engine(ds, only=["stems", "loudness"])
    assert again["stems"].planned == 1 and again["loudness"].planned == 0


def test_overwrite_replaces_only_the_stems_it_separated(tmp_path, scaled_weights, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(220, 2.0), stems={"vocals": sine(440, 2.0)})
    run_engine(ds, only=["stems"])
    vocals, bass = sha(ds / "A" / "vocals.flac"), (ds / "A" / "bass.flac").stat().st_mtime_ns
    _, stats = run_engine(ds, only=["stems"], overwrite=["stems"], module_options={"stems": {"shifts": 0}})
    assert stats["stems"].done == 1
    assert sha(ds / "A" / "vocals.flac") == vocals and (ds / "A" / "bass.flac").stat().st_mtime_ns != bass
    assert info_of(ds / "A")["_mirdeck"]["stems"]["shifts"] == 0
    # A separated stem the user replaced with their own is theirs from then on.
    soundfile.write(ds / "A" / "bass.flac", sine(55, 2.0, amplitude=0.3), 44100)
    users_bass = sha(ds / "A" / "bass.flac")
    run_engine(ds, only=["stems"], overwrite=["stems"])
    assert sha(ds / "A" / "bass.flac") == users_bass


def test_cache_folder_keeps_a_read_only_dataset_untouched(tmp_path, scaled_weights, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(220, 2.0))
    cache = tmp_path / "stem-cache"
    mounted = False
    if os.geteuid() == 0:  # root ignores permission bits: a read-only bind mount
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(ds), str(ds)], capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("running as root without mount rights: cannot make a read-only dataset")
    else:
        ds.chmod(0o555)
        (ds / "A").chmod(0o555)
    try:
        before = sorted(p.name for p in (ds / "A").iterdir())
        events, stats = run_engine(ds, only=["stems"], log_dir=tmp_path / "log")
        failure = events_named(events, "module_failed")
        assert "cannot write stems here" in failure[0].message and "cache_dir" in failure[0].message
        events, stats = run_engine(ds, only=["stems", "loudness"], log_dir=tmp_path / "log",
                                   module_options={"stems": {"cache_dir": str(cache)}})
        written = sorted(p.name for p in cache.glob("A-*/*.flac"))
        assert written == sorted(f"{s}.flac" for s in STEMS)
        assert sorted(p.name for p in (ds / "A").iterdir()) == before  # nothing written into the dataset
        # The .INFO cannot be written: said so, naming the track, and the run went on.
        assert any("A.INFO" in e.message or "/A" in e.message for e in events_named(events, "module_failed"))
        # A later run with the same cache finds the stems there: nothing to separate again.
        _, stats = run_engine(ds, only=["stems"], log_dir=tmp_path / "log",
                              module_options={"stems": {"cache_dir": str(cache)}})
        assert stats["stems"].skipped == 1 and stats["stems"].planned == 0
    finally:
        if mounted:
            subprocess.run(["umount", str(ds)], check=True)
        ds.chmod(0o755)
        (ds / "A").chmod(0o755)


def test_cached_stems_are_read_by_the_modules_and_marked_separated(tmp_path, scaled_weights, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(220, 4.0))
    options = {"stems": {"cache_dir": str(tmp_path / "cache")}}
    run_engine(ds, only=["stems", "loudness"], module_options=options)
    assert not (ds / "A" / "drums.flac").exists()
    info = info_of(ds / "A")
    assert info["lufs_drums"] == pytest.approx(info["lufs"] + 20 * np.log10(0.1), abs=0.05)
    assert info["_mirdeck"]["loudness"]["stems"]["drums"] == "separated"
    assert os.path.isabs(info["_mirdeck"]["stems"]["stems"]["drums"]["file"])
    # Another module later, in another run, reads the cached stems too.
    run_engine(ds, only=["harmonic"], module_options=options)
    assert info_of(ds / "A")["_mirdeck"]["harmonic"]["stems"] == {"bass": "separated", "other": "separated"}


def test_out_of_memory_halves_the_batch_then_gives_up(tmp_path, monkeypatch):
    """Halving must not change the stems; at one segment per pass the error is out_of_memory."""
    import torch

    from backends.extractors import stems as module
    from backends.extractors.stems import separate
    from backends.protocol import OutOfMemory
    from backends.track import Source, Track

    real = separate.stream
    calls = []

    def tight(model, mix, *, batch, sink, **kw):
        calls.append(batch)

        def sink_then_fail(part):  # out of memory midway: the frames written so far are dropped
            sink(part)
            if batch > limit:
                raise torch.OutOfMemoryError("stand-in: batch too large")
        return real(model, mix, batch=batch, sink=sink_then_fail, **kw)

    monkeypatch.setattr(separate, "stream", tight)
    weights = tmp_path / "w"
    standin.install_scaled_copies(weights)
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(weights))
    folder = tmp_path / "A"
    folder.mkdir()
    pcm = tmp_path / "mix.npy"
    np.save(pcm, music(3.0))
    source = Source(name="mix", path=str(folder / "full_mix.flac"), sample_rate=44100, channels=2,
                    frames=3 * 44100, pcm={"44100": str(pcm)})
    extractor = module.create()

    def request(name):
        return Track(request_id="1", folder=folder, name="A", sources={"mix": source},
                     options={"batch": 8, "write_stems": {"drums": str(folder / name)}})

    limit = 2
    result = extractor.process(request("drums.flac"))
    assert calls == [8, 4, 2] and result.provenance["batch"] == 2
    data, _ = soundfile.read(folder / "drums.flac", always_2d=True)
    assert data.shape == (3 * 44100, 2)  # the retries' partial frames are not in the file
    assert sorted(p.name for p in folder.iterdir()) == ["drums.flac"]  # no temporary file left
    limit = 0
    calls.clear()
    with pytest.raises(OutOfMemory, match="one 7.8 s segment per pass"):
        extractor.process(request("drums2.flac"))
    assert calls == [8, 4, 2, 1]


def test_demo_skips_stems_without_weights_and_names_the_fetch_command(tmp_path, monkeypatch):
    """What a newcomer sees: no stems from random weights, but the one command that brings the real ones."""
    from tui.cli import modules_missing_models

    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "empty"))
    assert modules_missing_models()["stems"] == ["htdemucs"]
    standin.install_scaled_copies(tmp_path / "empty")  # a stand-in is not the published checkpoint
    assert modules_missing_models()["stems"] == ["htdemucs"]
    assert modules_missing_models({"stems": {"model": "htdemucs_ft"}})["stems"] == [
        "htdemucs_ft-drums", "htdemucs_ft-bass", "htdemucs_ft-other", "htdemucs_ft-vocals"]


def test_htdemucs_ft_is_a_bag_with_one_model_per_stem(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "weights"))
    ds = tmp_path / "ds"
    write_track(ds, "A", sine(330, 3.0))
    options = {"stems": {"model": "htdemucs_ft", "shifts": 0}}
    run_engine(ds, only=["stems"], module_options=options)
    failure = info_of(ds / "A")["_mirdeck"]["stems"]["error"]
    assert failure["kind"] == "model_missing" and ("mirdeck models fetch htdemucs_ft-drums htdemucs_ft-bass "
                                                   "htdemucs_ft-other htdemucs_ft-vocals") in failure["message"]
    standin.install_scaled_copies(tmp_path / "weights", "htdemucs_ft")
    _, stats = run_engine(ds, only=["stems", "loudness"], module_options=options)
    info = info_of(ds / "A")
    assert info["_mirdeck"]["stems"]["model"] == "htdemucs_ft" and len(info["_mirdeck"]["stems"]["model_files"]) == 4
    for stem, gain in zip(STEMS, standin.ScaledCopies.GAINS):
        assert info[f"lufs_{stem}"] == pytest.approx(info["lufs"] + 20 * np.log10(gain), abs=0.05), stem


def test_a_stems_only_module_says_why_when_the_separation_it_waited_for_failed(tmp_path, scaled_weights,
                                                                              monkeypatch):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(scaled_weights))
    ds = tmp_path / "ds"
    write_track(ds, "surround", music(2.0, channels=6))
    _, stats = run_engine(ds, only=["stems", "harmonic"])
    error = info_of(ds / "surround")["_mirdeck"]["harmonic"]["error"]
    assert error["kind"] == "bad_input" and "separation failed" in error["message"] and "6 channels" in error["message"]
    # Next time the separation is retried, but harmonic is n/a (no stems, none to count on), not failed again.
    _, again = run_engine(ds, only=["stems", "harmonic"])
    assert again["stems"].planned == 1 and again["harmonic"].planned == 0 and again["harmonic"].not_applicable == 1


def test_a_killed_workers_partial_stem_files_are_removed_by_the_next_writer(tmp_path):
    from backends.extractors.stems import output

    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    target = tmp_path / "drums.flac"
    stale = tmp_path / f".drums.flac.{dead.pid}.k2j3{output.PARTIAL}"
    live = tmp_path / f".drums.flac.{os.getppid()}.x9y8{output.PARTIAL}"  # a writer still at work
    other = tmp_path / f".bass.flac.{dead.pid}.aaaa{output.PARTIAL}"  # another stem's: not this writer's
    for path in (stale, live, other):
        path.write_bytes(b"half a flac")
    writer = output.StemWriter(target, rate=44100, channels=2, frames=10, model_rate=44100, replace=False)
    writer.write(np.zeros((10, 2), np.float32))
    writer.finish()
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["drums.flac", live.name, other.name])
