"""Each export format, written from real .INFO files (the real engine over synthesised tracks with
known tempo and key) and read back by its consumer's own library where that library installs."""
from __future__ import annotations

import importlib.util
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.support.essentia_standins import PROBABILITIES
from tests.support.export_dataset import BROKEN, CLIPPED
from tui.demo import TRUTH_FILE
from tui.export import ExportOptions, run_export
from tui.export.audiocraft import AUDIO_META_FIELDS, MUSIC_INFO_FIELDS
from tui.export.features import clean_label
from tui.export.output import SCHEMA_VERSION, STATE_FILE
from tui.export.template import load_template

GROOVE = "Demo Band - Groove in A minor"
PULSE = "Demo Band - E♭ Major Pulse"
QUIET = "Quiet Room - Near Silence"
TINY = "Tiny - Blip"


def truth(dataset: Path) -> dict:
    return json.loads((dataset / TRUTH_FILE).read_text(encoding="utf-8"))


def standin_labels(model: str) -> list[str]:
    """The stand-in graph's labels above the export threshold, most probable first, as words."""
    from backends.extractors.essentia_tf.catalogue import metadata

    classes = metadata(model).classes
    ranked = sorted(PROBABILITIES[model].items(), key=lambda kv: -kv[1])
    return [clean_label(classes[i]) for i, p in ranked if p >= 0.1]


def rows_of(path: Path) -> dict[str, dict]:
    return {row["track"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


# -- jsonl ----------------------------------------------------------------------------------------
def test_jsonl_has_one_row_per_track_with_the_features_and_says_which_info_is_broken(analysed, tmp_path):
    summary = run_export(analysed, "jsonl", tmp_path / "out")
    rows = rows_of(tmp_path / "out" / "tracks.jsonl")
    known = truth(analysed)
    assert set(rows) == set(known) | {CLIPPED}
    assert any(BROKEN in s for s in summary.skipped) and any(BROKEN in p for p in summary.problems)
    for name, t in known.items():
        row = rows[name]
        assert row["audio_path"] == str((analysed / name).resolve() / Path(row["audio_relpath"]).name)
        assert row["duration_seconds"] == pytest.approx(t["seconds"], abs=0.01)
        if t["bpm"]:
            assert row["bpm"] == pytest.approx(t["bpm"], abs=1.5)
            assert f"{t['bpm']:.0f} BPM" in row["prompt"]
        else:
            assert "BPM" not in row["prompt"]  # no tempo: no words about one
    assert f"{known[GROOVE]['key']}" in rows[GROOVE]["prompt"]
    assert isinstance(rows[GROOVE]["essentia_genre"], dict)
    assert "provenance" not in rows[GROOVE]


def test_prompts_name_only_the_labels_the_model_gave(analysed, tmp_path):
    run_export(analysed, "jsonl", tmp_path / "out")
    prompt = rows_of(tmp_path / "out" / "tracks.jsonl")[PULSE]["prompt"]
    info = json.loads((analysed / PULSE / f"{PULSE}.INFO").read_text(encoding="utf-8"))
    genres = [clean_label(g) for g, _ in sorted(info["essentia_genre"].items(), key=lambda kv: -kv[1])]
    moods = standin_labels("mtg_jamendo_moodtheme-discogs-effnet-1")
    assert prompt.startswith(", ".join(genres) + ", " + ", ".join(moods) + ", ")
    assert prompt.endswith("128 BPM, Eb major")


def test_a_custom_template_drops_parts_whose_features_are_missing(analysed, tmp_path):
    template = tmp_path / "t.toml"
    template.write_text('separator = ". "\nparts = ["{title} by {artist}", "{bpm:.0f} BPM", "in {key}", '
                        '"{lufs:.0f} LUFS"]\n', encoding="utf-8")
    run_export(analysed, "jsonl", tmp_path / "out", ExportOptions(template=load_template(template)))
    rows = rows_of(tmp_path / "out" / "tracks.jsonl")
    assert rows[GROOVE]["prompt"].startswith("Groove in A minor by Demo Band. 120 BPM. in A minor. ")
    assert rows[QUIET]["prompt"].startswith("Near Silence by Quiet Room")
    assert "BPM" not in rows[QUIET]["prompt"] and "None" not in rows[QUIET]["prompt"]


def test_a_misspelt_template_field_is_an_error_not_a_silent_gap(analysed, tmp_path):
    from tui.export.template import TemplateError

    template = tmp_path / "t.toml"
    template.write_text('parts = ["{genra}"]\n', encoding="utf-8")
    with pytest.raises(TemplateError, match="unknown fields genra"):
        run_export(analysed, "jsonl", tmp_path / "out", ExportOptions(template=load_template(template)))


# -- parquet --------------------------------------------------------------------------------------
def test_parquet_reads_in_pyarrow_with_typed_columns_and_label_maps(analysed, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_export(analysed, "parquet", tmp_path / "out", ExportOptions(provenance=True))
    table = pq.read_table(tmp_path / "out" / "tracks.parquet")
    schema = table.schema
    assert schema.metadata[b"mirdeck_export_schema"] == str(SCHEMA_VERSION).encode()
    assert schema.field("bpm").type == pa.float64()
    assert schema.field("bpm_is_defined").type == pa.int64()  # the module writes 1/0; kept as written
    assert schema.field("key").type == pa.string()
    assert schema.field("essentia_genre").type == pa.list_(
        pa.struct([pa.field("label", pa.string()), pa.field("probability", pa.float64())]))
    rows = {r["track"]: r for r in table.to_pylist()}
    assert set(rows) == set(truth(analysed)) | {CLIPPED}
    assert rows[GROOVE]["bpm"] == pytest.approx(120, abs=1.5)
    assert rows[QUIET]["bpm"] is None and rows[QUIET]["bpm_is_defined"] == 0
    info_genres = json.loads((analysed / PULSE / f"{PULSE}.INFO").read_text(encoding="utf-8"))["essentia_genre"]
    pairs = [(p["label"], p["probability"]) for p in rows[PULSE]["essentia_genre"]]
    assert dict(pairs) == info_genres and [p for _, p in pairs] == sorted(info_genres.values(), reverse=True)
    assert rows[GROOVE]["audio"]["path"] == str((analysed / GROOVE / "full_mix.flac").resolve())
    assert json.loads(rows[GROOVE]["provenance"])["rhythm"]["status"] == "ok"


def test_label_maps_on_request(analysed, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_export(analysed, "parquet", tmp_path / "out", ExportOptions(label_maps=True))
    table = pq.read_table(tmp_path / "out" / "tracks.parquet")
    assert table.schema.field("essentia_mood").type == pa.map_(pa.string(), pa.float64())
    groove = next(r for r in table.to_pylist() if r["track"] == GROOVE)
    info = json.loads((analysed / GROOVE / f"{GROOVE}.INFO").read_text(encoding="utf-8"))
    assert dict(groove["essentia_mood"]) == info["essentia_mood"]


def test_parquet_loads_in_hugging_face_datasets_with_an_audio_column(analysed, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    run_export(analysed, "parquet", tmp_path / "out")
    ds = datasets.Dataset.from_parquet(str(tmp_path / "out" / "tracks.parquet"), cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["audio"], datasets.Audio)
    assert ds.features["bpm"] == datasets.Value("float64")
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    by_track = {r["track"]: r for r in ds}
    assert by_track[PULSE]["audio"]["path"] == str((analysed / PULSE / "full_mix.wav").resolve())
    pairs = {p["label"]: p["probability"] for p in by_track[PULSE]["essentia_genre"]}
    assert max(pairs.values()) == pytest.approx(max(PROBABILITIES["genre_discogs400-discogs-effnet-1"].values()),
                                                abs=1e-3)


# -- audiocraft -----------------------------------------------------------------------------------
def test_audiocraft_manifest_and_sidecars_match_its_documented_fields(analysed, tmp_path):
    """AudioCraft itself does not install beside torch 2.13 (it pins torch 2.1 and xformers), so
    this checks its documented schema field for field: ``AudioMeta`` lines in data.jsonl and the
    ``MusicInfo`` fields (audiocraft/data/music_dataset.py) in ``Path(path).with_suffix('.json')``,
    all present as MusicDataset's default ``info_fields_required=True`` demands."""
    out = tmp_path / "out"
    summary = run_export(analysed, "audiocraft", out)
    lines = [json.loads(line) for line in (out / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == summary.exported == len(truth(analysed)) + 1
    known = truth(analysed)
    for meta in lines:
        assert tuple(meta) == AUDIO_META_FIELDS
        audio = Path(meta["path"])
        assert audio.is_absolute() and audio.exists()
        info = soundfile.info(str(audio))
        assert meta["sample_rate"] == info.samplerate and meta["duration"] == pytest.approx(info.duration, abs=0.01)
        sidecar = json.loads(audio.with_suffix(".json").read_text(encoding="utf-8"))
        assert set(MUSIC_INFO_FIELDS) <= set(sidecar)
        name = audio.parent.name
        assert sidecar["name"] == name
        if name in known and known[name]["bpm"]:
            assert sidecar["bpm"] == pytest.approx(known[name]["bpm"], abs=1.5)
            assert sidecar["key"] == known[name]["key"]
        elif name in known:
            assert sidecar["bpm"] is None
        assert isinstance(sidecar["moods"], list) and all(isinstance(m, str) for m in sidecar["moods"])
        assert sidecar["genre"] is None or isinstance(sidecar["genre"], str)
    groove = json.loads((out / "audio" / GROOVE / "full_mix.json").read_text(encoding="utf-8"))
    assert (groove["artist"], groove["title"]) == ("Demo Band", "Groove in A minor")
    assert groove["description"]  # no Flamingo answer here: the template's prompt
    assert "BPM" in groove["description"]


def test_audiocraft_description_comes_from_the_chosen_flamingo_key(dataset, tmp_path):
    from tui.run.store import merge

    answer = "A warm groove with punchy drums."  # as if flamingo_gguf had answered
    merge(dataset / GROOVE, "flamingo_gguf", features={"music_flamingo_full": answer},
          provenance={"status": "ok", "version": "1"})
    run_export(dataset, "audiocraft", tmp_path / "out")
    sidecar = json.loads((tmp_path / "out" / "audio" / GROOVE / "full_mix.json").read_text(encoding="utf-8"))
    assert sidecar["description"] == answer


@pytest.mark.skipif(importlib.util.find_spec("audiocraft") is None,
                    reason="audiocraft does not install beside torch 2.13 (it pins torch 2.1.0); "
                           "the schema test above checks its documented fields instead")
def test_audiocraft_music_info_reads_the_sidecars(analysed, tmp_path):  # pragma: no cover - not installable here
    from audiocraft.data.music_dataset import MusicInfo

    run_export(analysed, "audiocraft", tmp_path / "out")
    for line in (tmp_path / "out" / "data.jsonl").read_text(encoding="utf-8").splitlines():
        sidecar = json.loads(Path(json.loads(line)["path"]).with_suffix(".json").read_text(encoding="utf-8"))
        assert MusicInfo.from_dict(sidecar, fields_required=True).name == sidecar["name"]


# -- stable-audio ---------------------------------------------------------------------------------
def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("custom_md", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stable_audio_metadata_module_answers_like_stable_audio_tools_asks(analysed, tmp_path):
    """Stable Audio Tools calls ``get_custom_metadata(info, audio)`` with ``info["path"]`` and
    ``info["relpath"]`` (relative to the dataset config's path) for every audio file it finds."""
    run_export(analysed, "stable-audio", tmp_path / "out")
    module = load_module(tmp_path / "out" / "custom_metadata.py")
    mix = analysed / GROOVE / "full_mix.flac"
    got = module.get_custom_metadata({"path": str(mix), "relpath": os.path.relpath(mix, analysed)}, None)
    assert "120 BPM" in got["prompt"] and got["bpm"] == pytest.approx(120, abs=1.5)
    assert isinstance(got["essentia_genre"], str)
    by_path = module.get_custom_metadata({"path": str(mix.resolve())}, None)
    assert by_path["prompt"] == got["prompt"]
    stem = analysed / GROOVE / "drums.flac"
    assert module.get_custom_metadata({"path": str(stem), "relpath": os.path.relpath(stem, analysed)},
                                      None) == {"__reject__": True}


def test_stable_audio_shards_load_in_webdataset(analysed, tmp_path):
    import webdataset as wds

    run_export(analysed, "stable-audio", tmp_path / "out", ExportOptions(shards=True, shard_size=2))
    shards = sorted((tmp_path / "out" / "shards").glob("*.tar"))
    assert len(shards) == 3  # 5 exported tracks, 2 per shard
    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode())
    assert len(samples) == 5
    by_track = {s["json"]["track"]: s for s in samples}
    pulse = by_track[PULSE]
    decoded, rate = soundfile.read(__import__("io").BytesIO(pulse["flac"]))
    original, original_rate = soundfile.read(analysed / PULSE / "full_mix.wav")  # converted by ffmpeg
    assert rate == original_rate and np.array_equal(decoded, original)
    assert "128 BPM" in pulse["json"]["prompt"]
    with tarfile.open(shards[0]) as tar:
        assert [m.name.split(".", 1)[1] for m in tar.getmembers()] == ["flac", "json", "flac", "json"]


# -- acestep --------------------------------------------------------------------------------------
def test_acestep_sidecars_hold_only_what_is_known(analysed, tmp_path):
    run_export(analysed, "acestep", tmp_path / "out")
    groove = json.loads((tmp_path / "out" / "audio" / GROOVE / "full_mix.json").read_text(encoding="utf-8"))
    assert groove["bpm"] == 120 and groove["keyscale"] == "A minor" and "120 BPM" in groove["caption"]
    assert "timesignature" not in groove  # no module estimates the metre: never a guessed 4/4
    quiet = json.loads((tmp_path / "out" / "audio" / QUIET / "full_mix.json").read_text(encoding="utf-8"))
    assert "bpm" not in quiet and quiet["duration"] == pytest.approx(20.0, abs=0.01)
    index = json.loads((tmp_path / "out" / "dataset.json").read_text(encoding="utf-8"))
    assert index["mirdeck_export_schema"] == SCHEMA_VERSION
    assert {s["track"] for s in index["samples"]} == set(truth(analysed)) | {CLIPPED}
    assert os.path.realpath(tmp_path / "out" / "audio" / GROOVE / "full_mix.flac") == str(
        (analysed / GROOVE / "full_mix.flac").resolve())


# -- incremental ----------------------------------------------------------------------------------
def test_a_rerun_writes_only_what_changed(dataset, tmp_path):
    from tui.run.store import merge

    out = tmp_path / "out"
    first = run_export(dataset, "audiocraft", out)
    assert "data.jsonl" in first.written and first.unchanged == 0
    again = run_export(dataset, "audiocraft", out)
    assert again.written == [] and again.unchanged == len(first.written)
    state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    assert state["schema_version"] == SCHEMA_VERSION and state["format"] == "audiocraft"

    merge(dataset / PULSE, "rhythm", features={"bpm": 64.0}, provenance={"status": "ok", "version": "1"})
    changed = run_export(dataset, "audiocraft", out)
    assert changed.written == [f"audio/{PULSE}/full_mix.json"]
    assert json.loads((out / "audio" / PULSE / "full_mix.json").read_text(encoding="utf-8"))["bpm"] == 64.0

    import shutil

    shutil.rmtree(dataset / TINY)
    removed = run_export(dataset, "audiocraft", out)
    assert set(removed.removed) == {f"audio/{TINY}/full_mix.wav", f"audio/{TINY}/full_mix.json"}
    assert not (out / "audio" / TINY).exists() and removed.written == ["data.jsonl"]


def test_a_changed_template_rewrites_everything_and_a_foreign_folder_is_refused(analysed, tmp_path):
    from tui.export import ExportError

    out = tmp_path / "out"
    run_export(analysed, "jsonl", out)
    template = tmp_path / "t.toml"
    template.write_text('parts = ["{genre}"]\n', encoding="utf-8")
    assert run_export(analysed, "jsonl", out, ExportOptions(template=load_template(template))).written == [
        "tracks.jsonl"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty and holds no mirdeck export"):
        run_export(analysed, "jsonl", foreign)
    with pytest.raises(ExportError, match="holds a 'jsonl' export"):
        run_export(analysed, "parquet", out)


def test_a_track_added_or_removed_rewrites_one_shard_and_every_track_keeps_its_key(analysed, tmp_path):
    import shutil

    import webdataset as wds

    dataset = tmp_path / "ds"
    shutil.copytree(analysed, dataset, ignore=shutil.ignore_patterns(".mirdeck"))
    out = tmp_path / "out"
    options = ExportOptions(shards=True, shard_size=2)

    def shards() -> dict[str, tuple[int, dict[str, str]]]:
        """Each shard: its inode-independent identity (mtime) and its tracks by key."""
        found = {}
        for path in sorted((out / "shards").glob("*.tar")):
            samples = wds.WebDataset([str(path)], shardshuffle=False).decode()
            found[path.name] = (path.stat().st_mtime_ns, {s["__key__"]: s["json"]["track"] for s in samples})
        return found

    run_export(dataset, "stable-audio", out, options)
    before = shards()
    assert [len(tracks) for _, tracks in before.values()] == [2, 2, 1]
    keys = {track: key for _, tracks in before.values() for key, track in tracks.items()}
    # A track that sorts first: by position it would shift every sample of every shard.
    shutil.copytree(dataset / PULSE, dataset / "AAA First - New Track")
    (dataset / "AAA First - New Track" / f"{PULSE}.INFO").rename(
        dataset / "AAA First - New Track" / "AAA First - New Track.INFO")
    summary = run_export(dataset, "stable-audio", out, options)
    after = shards()
    assert [name for name in before if before[name][0] != after[name][0]] == ["000002.tar"]
    assert "shards/000002.tar" in summary.written and "shards/000000.tar" not in summary.written
    assert after["000002.tar"][1] == {**before["000002.tar"][1], "000005": "AAA First - New Track"}
    # A track that leaves rewrites only its own shard; the others and every key stay.
    shutil.rmtree(dataset / GROOVE)
    run_export(dataset, "stable-audio", out, options)
    last = shards()
    changed = [name for name in after if after[name][0] != last.get(name, (None,))[0]]
    assert changed == [name for name, (_, tracks) in after.items() if GROOVE in tracks.values()]
    for _, tracks in last.values():
        for key, track in tracks.items():
            assert keys.get(track, "000005") == key
    # A track added after one left gets a key never given, not the one that left with GROOVE.
    shutil.copytree(dataset / PULSE, dataset / "ZZZ Last - Newer Track")
    (dataset / "ZZZ Last - Newer Track" / f"{PULSE}.INFO").rename(
        dataset / "ZZZ Last - Newer Track" / "ZZZ Last - Newer Track.INFO")
    run_export(dataset, "stable-audio", out, options)
    newest = {track: key for _, tracks in shards().values() for key, track in tracks.items()}
    assert newest["ZZZ Last - Newer Track"] == "000006" and keys[GROOVE] not in newest.values()
