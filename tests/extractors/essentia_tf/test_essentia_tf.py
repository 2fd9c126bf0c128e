"""essentia_tf through the real engine, real essentia and stand-in graphs with the real interfaces.

The stand-ins (tests/support/essentia_standins.py) give known probabilities, so the tests can assert the
exact labels, their order and the chosen columns; they say nothing about real predictions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.extractors.essentia_tf.catalogue import ALL_MODELS, EMBEDDING, HEADS, metadata, parse_metadata
from backends.extractors.essentia_tf.labels import OptionError, parse_settings, top_labels
from tests.support.essentia_standins import (
    AUDIO_GENRE,
    PROBABILITIES,
    label_head_graph,
    model_path,
    vggish_graph,
    write_standins,
)
from tests.support.helpers import info_of, run_engine, write_track
from tui.paths import ROOT
from tui.run import events as ev

GENRE = "genre_discogs400-discogs-effnet-1"
MOOD = "mtg_jamendo_moodtheme-discogs-effnet-1"
INSTRUMENT = "mtg_jamendo_instrument-discogs-effnet-1"
DANCE = "danceability-vggish-audioset-1"
TONAL = "tonal_atonal-vggish-audioset-1"
VOICE = "voice_instrumental-vggish-audioset-1"
RATE = 44100


def noise(seconds: float, amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(amplitude * rng.standard_normal((int(seconds * RATE), 2)), -1, 1).astype(np.float32)


def labels_of(model: str, indices) -> list[str]:
    classes = metadata(model).classes
    return [classes[i] for i in indices]


def module_errors(events) -> dict[str, ev.ModuleFailed]:
    return {e.track: e for e in events if isinstance(e, ev.ModuleFailed) and e.module == "essentia_tf"}


def graph_loads(log_dir: Path) -> dict[tuple[str, str], int]:
    """(worker pid, model) -> how many times that worker loaded that graph, from the run log."""
    counts: dict[tuple[str, str], int] = {}
    for line in (log_dir / "workers.log").read_text(encoding="utf-8").splitlines():
        if "essentia_tf: loaded graph " in line:
            pid = line.split("essentia_tf[")[1].split("]")[0]
            model = line.split("loaded graph ")[1].split()[0]
            counts[(pid, model)] = counts.get((pid, model), 0) + 1
    return counts


def run(dataset: Path, weights: Path, monkeypatch, *, options=None, jobs=1, on_event=None):
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(weights))
    log_dir = dataset.parent / f"{dataset.name}-log"
    events, stats = run_engine(dataset, only=["essentia_tf"], jobs=jobs, overwrite=["all"],
                               module_options={"essentia_tf": options or {}}, log_dir=log_dir,
                               on_event=on_event)
    return events, stats, log_dir


# -- metadata and label mapping (no TensorFlow) --------------------------------------------------

def test_node_names_and_class_counts_come_from_the_real_metadata():
    genre, mood, instrument = metadata(GENRE), metadata(MOOD), metadata(INSTRUMENT)
    assert (genre.input, genre.output, len(genre.classes)) == (
        "serving_default_model_Placeholder", "PartitionedCall:0", 400)
    assert (mood.input, mood.output, len(mood.classes)) == ("model/Placeholder", "model/Sigmoid", 56)
    assert (instrument.input, instrument.output, len(instrument.classes)) == ("model/Placeholder", "model/Sigmoid", 40)
    for model in (DANCE, TONAL, VOICE):
        assert (metadata(model).input, metadata(model).output) == ("model/Placeholder", "model/Sigmoid")
    # The embedding output is the second output of PartitionedCall, not the style activations.
    assert EMBEDDING.output == "PartitionedCall:1"


def test_danceability_and_atonality_columns_are_looked_up_by_label():
    assert metadata(TONAL).column("atonal") == 0
    assert metadata(DANCE).column("danceable") == 0
    assert metadata(VOICE).column("voice") == 1
    # A model listing its classes the other way round gets the other column.
    raw = json.loads((ROOT / "models/essentia" / f"{TONAL}.json").read_text())
    raw["classes"] = ["tonal", "atonal"]
    assert parse_metadata(TONAL, raw).column("atonal") == 1


def test_top_labels_threshold_top_k_and_order():
    probs = [0.05, 0.5, 0.2, 0.5, 0.9, 0.1]
    classes = ["a", "b", "c", "d", "e", "f"]
    got = top_labels(probs, classes, threshold=0.1, top_k=10)
    assert list(got) == ["e", "b", "d", "c", "f"]  # ties keep the model's class order
    assert got == {"e": 0.9, "b": 0.5, "d": 0.5, "c": 0.2, "f": 0.1}
    assert list(top_labels(probs, classes, threshold=0.1, top_k=2)) == ["e", "b"]
    assert top_labels(probs, classes, threshold=0.95, top_k=10) == {}
    assert top_labels([0.123456], ["x"], threshold=0, top_k=1) == {"x": 0.1235}


def test_settings_defaults_and_bad_values():
    s = parse_settings({})
    assert (s.heads, s.threshold, s.top_k, s.sidecar) == (
        ("genre", "mood", "instrument", "danceability", "atonality"), 0.1, 10, False)
    assert parse_settings({"heads": "atonality, genre"}).heads == ("genre", "atonality")
    for bad in ({"threshold": 1.5}, {"threshold": "high"}, {"top_k": 0}, {"top_k": 2.5},
                {"heads": ["genre", "tempo"]}, {"heads": []}, {"sidecar": "yes"}, {"treshold": 0.2}):
        with pytest.raises(OptionError) as info:
            parse_settings(bad)
        assert str(next(iter(bad))) in str(info.value)


def test_registry_import_loads_neither_essentia_nor_numpy():
    code = ("from backends.registry import all_specs; all_specs(); import sys; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('essentia', 'numpy', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


# -- through the engine ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One run with every head and the sidecar over a loud, a silent, a short and an oddly named track."""
    root = tmp_path_factory.mktemp("ess")
    weights = root / "weights"
    write_standins(weights)
    dataset = root / "data"
    write_track(dataset, "loud", noise(6.0))
    write_track(dataset, "silent", np.zeros((int(5 * RATE), 2), np.float32))
    write_track(dataset, "short", noise(1.5), fmt="wav")
    write_track(dataset, "Ünïcode, 'quoted' name", noise(4.0, seed=3), rate=48000, fmt="wav")
    mp = pytest.MonkeyPatch()
    try:
        events, stats, log_dir = run(dataset, weights, mp, jobs=2,
                                     options={"heads": list(HEADS), "sidecar": True})
    finally:
        mp.undo()
    return dataset, events, stats, log_dir


def test_labels_follow_metadata_and_probabilities(full_run):
    dataset, events, stats, _ = full_run
    info = info_of(dataset / "loud")
    genre = info["essentia_genre"]
    # audio-dependent (> 0.99 on loud noise), 0.9, 0.6, 0.35, 0.2; 0.09 is below the threshold.
    assert list(genre) == labels_of(GENRE, [AUDIO_GENRE, 7, 3, 250, 399])
    assert genre[labels_of(GENRE, [7])[0]] == 0.9 and genre[labels_of(GENRE, [399])[0]] == 0.2
    assert 0.99 < genre[labels_of(GENRE, [AUDIO_GENRE])[0]] < 1
    assert info["essentia_mood"] == dict(zip(labels_of(MOOD, [5, 20]), [0.7, 0.4]))
    assert info["essentia_instrument"] == {"acousticguitar": 0.8, labels_of(INSTRUMENT, [30])[0]: 0.15}
    # Columns by label: P(danceable) is column 0 (0.8), P(atonal) column 0 (0.25, not P(tonal) 0.9).
    assert info["danceability"] == 0.8
    assert info["atonality"] == 0.25
    assert (info["voice_probability"], info["instrumental_probability"]) == (0.7, 0.35)


def test_heads_read_this_tracks_embeddings(full_run):
    dataset, *_ = full_run
    silent = info_of(dataset / "silent")["essentia_genre"]
    assert labels_of(GENRE, [AUDIO_GENRE])[0] not in silent  # 0.018 on silence
    assert list(silent) == labels_of(GENRE, [7, 3, 250, 399])


def test_sidecar_holds_every_label_in_metadata_order(full_run):
    dataset, *_ = full_run
    info = info_of(dataset / "loud")
    sidecar = dataset / "loud" / "loud.ESSENTIA_TF"
    assert info["_mirdeck"]["essentia_tf"]["files"] == {"probabilities": "loud.ESSENTIA_TF"}
    full = json.loads(sidecar.read_text())
    assert list(full["genre"]) == list(metadata(GENRE).classes)
    assert list(full["mood"]) == list(metadata(MOOD).classes)
    assert list(full["instrument"]) == list(metadata(INSTRUMENT).classes)
    assert full["atonality"] == {"atonal": 0.25, "tonal": 0.9}
    assert full["genre"][labels_of(GENRE, [12])[0]] == 0.09  # below threshold: only here
    assert sum(len(v) for k, v in full.items() if k in ("genre", "mood", "instrument")) == 496


def test_provenance_marks_stand_ins_and_checksums(full_run):
    dataset, *_ = full_run
    prov = info_of(dataset / "loud")["_mirdeck"]["essentia_tf"]
    assert prov["status"] == "ok"
    assert sorted(prov["stand_in"]) == sorted(ALL_MODELS)
    assert set(prov["model_sha256"]) == set(ALL_MODELS)
    assert prov["stage_seconds"]["embeddings"] > 0


def test_short_audio_is_bad_input_naming_the_file(full_run):
    dataset, events, stats, _ = full_run
    error = module_errors(events)["short"]
    assert error.kind == "bad_input"
    assert "short/full_mix.wav" in error.message and "too short" in error.message
    assert "1.500 s" in error.message
    info = info_of(dataset / "short")
    assert not any(k in info for k in ("essentia_genre", "danceability", "atonality"))


def test_odd_names_and_rates_work(full_run):
    dataset, *_ = full_run
    info = info_of(dataset / "Ünïcode, 'quoted' name")
    assert info["atonality"] == 0.25 and "essentia_genre" in info


def test_each_graph_loads_once_per_worker(full_run):
    _, events, stats, log_dir = full_run
    assert stats["essentia_tf"].done == 3
    loads = graph_loads(log_dir)
    assert {model for _, model in loads} == set(ALL_MODELS)
    assert set(loads.values()) == {1}


def test_graphs_are_not_read_again_after_the_first_track(tmp_path, monkeypatch):
    """The weights vanish once the first track is done: the next tracks still succeed, which
    they could not if any graph were loaded again."""
    weights = tmp_path / "weights"
    write_standins(weights, [EMBEDDING.name, GENRE, TONAL])
    dataset = tmp_path / "data"
    for i in range(3):
        write_track(dataset, f"t{i}", noise(3.0, seed=i))

    def remove_weights(engine, event):
        if isinstance(event, ev.ModuleFinished):
            for pb in weights.rglob("*.pb"):
                pb.unlink()

    events, stats, _ = run(dataset, weights, monkeypatch, options={"heads": ["genre", "atonality"]},
                           on_event=remove_weights)
    assert stats["essentia_tf"].done == 3, module_errors(events)
    assert not list(weights.rglob("*.pb"))
    assert len({json.dumps(info_of(dataset / f"t{i}")["atonality"]) for i in range(3)}) == 1


def test_threshold_top_k_and_heads_per_run(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    write_standins(weights, [EMBEDDING.name, GENRE, TONAL])  # mood, instrument, danceability not installed
    dataset = tmp_path / "data"
    write_track(dataset, "a", noise(4.0))
    events, stats, _ = run(dataset, weights, monkeypatch,
                           options={"heads": ["genre", "atonality"], "threshold": 0.3, "top_k": 2})
    info = info_of(dataset / "a")
    assert list(info["essentia_genre"]) == labels_of(GENRE, [AUDIO_GENRE, 7])
    assert info["atonality"] == 0.25
    assert not {"essentia_mood", "essentia_instrument", "danceability"} & set(info)


def test_missing_graph_is_model_missing_with_fetch_command(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    write_standins(weights, [EMBEDDING.name])
    dataset = tmp_path / "data"
    write_track(dataset, "a", noise(3.0))
    events, stats, _ = run(dataset, weights, monkeypatch, options={"heads": ["genre"]})
    error = module_errors(events)["a"]
    assert error.kind == "model_missing"
    assert f"mirdeck models fetch {GENRE}" in error.message
    assert "essentia_genre" not in info_of(dataset / "a")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_corrupt_graph_is_named_and_loaded_once(tmp_path, monkeypatch, damage):
    weights = tmp_path / "weights"
    write_standins(weights, [TONAL])
    path = model_path(weights, TONAL)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"")  # a broken-off download
    dataset = tmp_path / "data"
    for name in ("a", "b"):
        write_track(dataset, name, noise(2.0))
    events, stats, log_dir = run(dataset, weights, monkeypatch, options={"heads": ["atonality"]})
    errors = module_errors(events)
    assert {e.kind for e in errors.values()} == {"model_missing"}
    assert all(str(path) in e.message and "not a readable TensorFlow graph" in e.message
               and f"mirdeck models fetch {TONAL}" in e.message for e in errors.values())
    assert len(errors) == 2 and stats["essentia_tf"].failed == 2
    # Loaded (and failed) once: the second track gets the same error without a second try.
    assert (log_dir / "workers.log").read_text().count(f"could not load graph {TONAL}") == 1


def test_wrong_node_name_is_a_clear_error(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    write_standins(weights, [EMBEDDING.name])
    model_path(weights, MOOD).write_bytes(label_head_graph(MOOD, PROBABILITIES[MOOD], output_node="model/Softmax"))
    model_path(weights, DANCE).write_bytes(vggish_graph(DANCE, PROBABILITIES[DANCE]))
    dataset = tmp_path / "data"
    write_track(dataset, "a", noise(3.0))
    events, stats, _ = run(dataset, weights, monkeypatch, options={"heads": ["mood", "danceability"]})
    error = module_errors(events)["a"]
    assert error.kind == "model_missing"
    assert "has no node 'model/Sigmoid'" in error.message and str(model_path(weights, MOOD)) in error.message


def test_cli_set_parses_toml_values():
    from tui.cli import _module_options

    got = _module_options(["essentia_tf.threshold=0.25", 'essentia_tf.heads=["genre", "mood"]',
                           "essentia_tf.sidecar=true", "other.name=plain text"])
    assert got == {"essentia_tf": {"threshold": 0.25, "heads": ["genre", "mood"], "sidecar": True},
                   "other": {"name": "plain text"}}
    with pytest.raises(SystemExit):
        _module_options(["threshold=0.2"])


def test_options_per_run_from_the_command_line(tmp_path):
    weights = tmp_path / "weights"
    write_standins(weights, [EMBEDDING.name, GENRE])
    dataset = tmp_path / "data"
    write_track(dataset, "a", noise(3.0))
    env = {**os.environ, "MIRDECK_MODELS_DIR": str(weights)}
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "run", str(dataset), "--only", "essentia_tf", "--headless",
         "--log-dir", str(tmp_path / "log"), "--set", "essentia_tf.top_k=1",
         "--set", 'essentia_tf.heads=["genre"]'],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = info_of(dataset / "a")
    assert list(info["essentia_genre"]) == labels_of(GENRE, [AUDIO_GENRE])
    assert "atonality" not in info


def test_engine_survives_essentia_segfault(tmp_path, monkeypatch):
    """batchSize -1 kills essentia-tensorflow with SIGSEGV: that track fails as a crash, the
    worker is replaced and the other tracks are analysed."""
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", "tests.support.fake_backends.essentia_crash")
    monkeypatch.setenv("MIRDECK_MODELS_DIR", str(tmp_path / "weights"))
    write_standins(tmp_path / "weights", [EMBEDDING.name])
    dataset = tmp_path / "data"
    for name in ("a", "crash", "b"):
        write_track(dataset, name, noise(3.0))
    events, stats = run_engine(dataset, only=["_essentia_crash"], jobs=1, log_dir=tmp_path / "log")
    failed = {e.track: e for e in events if isinstance(e, ev.ModuleFailed) and e.attempt == 2}
    assert failed["crash"].kind == "crash"
    assert stats["_essentia_crash"].done == 2
    assert info_of(dataset / "a")["essentia_crash_patches"] == 1


def test_spec_lists_the_default_heads_models():
    from backends.extractors.essentia_tf import SPEC
    from backends.extractors.essentia_tf.catalogue import DEFAULT_HEADS
    from tui.install.models import load_manifest

    manifest = load_manifest()
    assert set(SPEC.models) == {EMBEDDING.name} | {HEADS[h].model for h in DEFAULT_HEADS}
    for model in ALL_MODELS:
        entry = manifest[model]
        assert entry.backend == "essentia_tf" and entry.file == f"essentia/{model}.pb"
        assert entry.url.startswith("https://essentia.upf.edu/models/") and entry.url.endswith(f"/{model}.pb")
    assert set(SPEC.optional_keys) == {k for h in HEADS.values() for k in h.keys}
