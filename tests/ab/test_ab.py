"""mirdeck ab: the comparison measures, the reports from recorded back-end outputs, and one real run.

The recorded outputs have the provenance shapes the two back ends write (llama-server's milliseconds
for GGUF, seconds and first-token time for transformers). The real run uses the transformers
stand-in; the GGUF side runs only where its back end and built binary are present, otherwise its
failure is what the report must show.
"""
from __future__ import annotations

import json

import pytest

from backends.flamingo.prompts import FEATURE_KEYS, MODEL_KEY, PROMPT_NAMES
from tests.support.ab_reports import recorded
from tests.support.helpers import sine, write_track
from tui.ab.compare import compare_facts, genres_of, key_of, rouge_l_f1, tempo_of
from tui.ab.reports import BackendRun, fairness, question_metrics, track_report, write_reports
from tui.ab.run import ABOptions, WinnerRefused, apply_winner
from tui.paths import ROOT

# ---- measures -------------------------------------------------------------------------------------

def test_rouge_l_f1_from_the_longest_common_word_subsequence():
    # LCS of (a b c d) and (a c d e) is (a c d): precision = recall = 3/4.
    assert rouge_l_f1("A b, c d.", "a C d e") == pytest.approx(0.75)
    assert rouge_l_f1("warm bass", "warm bass") == 1.0
    assert rouge_l_f1("warm bass", "cold drums") == 0.0
    assert rouge_l_f1("", "text") is None
    # Order matters: the same words reversed share a subsequence of one word only.
    assert rouge_l_f1("one two three", "three two one") == pytest.approx(1 / 3)


def test_facts_are_read_and_compared_only_where_both_state_them():
    assert tempo_of("An upbeat track at 128 BPM in A minor") == 128.0
    assert tempo_of("around 92.5 beats per minute") == 92.5
    assert key_of("in F# minor") == "F# minor" and key_of("in Gb minor") == "F# minor"
    assert key_of("a minor change of mood") is None  # lower-case "a" is an article, not a key
    assert genres_of("Lo-fi hip-hop with jazz chords") == {"lo-fi", "hip hop", "jazz"}
    facts = compare_facts("House at 124 BPM in C major", "Deep house, 62 bpm, A minor, disco flavour")
    assert facts["tempo"]["agreement"] == "half/double"
    assert facts["key"]["agreement"] == "relative"
    assert facts["genre"]["shared"] == ["house"] and facts["genre"]["jaccard"] == 0.5
    facts = compare_facts("Techno at 130 BPM", "A techno track")
    assert facts["tempo"]["agreement"] == "n/a" and facts["key"]["agreement"] == "n/a"
    assert compare_facts("128 bpm", "125 BPM")["tempo"]["agreement"] == "agree"   # 2.3 % apart
    assert compare_facts("128 bpm", "120 BPM")["tempo"]["agreement"] == "differ"  # 6.3 % apart


# ---- reports from recorded outputs ---------------------------------------------------------------

# What tests.support.flamingo_hf_standin.small_prompts writes, as the report must record it.
SMALL_PROMPTS_SAMPLING = {"top_k": 40, "top_p": 0.9, "min_p": 0.05, "repeat_penalty": 1.0, "repeat_last_n": 64,
                          "seed": 7, "sampler_order": ["penalties", "temperature", "top_k", "top_p", "min_p"]}


def test_report_has_every_field_for_two_tracks(tmp_path):
    reports = [
        track_report("One", "/data/One", {
            "gguf": recorded("gguf", {"full": "Deep house at 124 BPM in A minor."}),
            "hf": recorded("hf", {"full": "A deep house groove, 124 bpm, A minor, warm pads."})}),
        track_report("Two, with comma", "/data/Two", {
            "gguf": BackendRun(ok=False, error="flamingo_gguf: model 'music_flamingo_q8_0' is not installed"),
            "hf": recorded("hf", {})}),
    ]
    s = write_reports(tmp_path, reports)
    one = json.loads((tmp_path / "One.json").read_text())
    full = one["prompts"]["full"]
    assert full["gguf"]["text"].startswith("Deep house") and full["hf"]["text"].startswith("A deep house")
    assert full["gguf"]["tokens"] == 50 and full["gguf"]["seconds"] == 1.1 and full["gguf"]["tokens_per_s"] == 50.0
    assert full["hf"]["tokens"] == 40 and full["hf"]["seconds"] == 2.0 and full["hf"]["first_token_s"] == 0.25
    assert 0 < full["rouge_l_f1"] < 1
    assert full["facts"]["tempo"]["agreement"] == "agree" and full["facts"]["key"]["agreement"] == "agree"
    assert one["backends"]["gguf"]["peak_rss_bytes"] == 3 << 30
    assert one["backends"]["hf"]["peak_gpu_bytes"] is None  # no probe, no GPU: not a made-up zero
    for prompt in PROMPT_NAMES:
        for side in ("gguf", "hf"):
            assert set(one["prompts"][prompt][side]) >= {"text", "tokens", "seconds", "tokens_per_s"}
    two = json.loads((tmp_path / "Two, with comma.json").read_text())
    assert two["backends"]["gguf"]["ok"] is False and "not installed" in two["backends"]["gguf"]["error"]
    assert two["prompts"]["full"]["rouge_l_f1"] is None
    md = (tmp_path / "One.md").read_text()
    assert "Deep house at 124 BPM" in md and "A deep house groove" in md and "| peak GPU memory | n/a | n/a |" in md
    assert s["backends"]["gguf"]["ok_tracks"] == 1 and s["backends"]["gguf"]["failed_tracks"] == 1
    assert s["compared_tracks"] == 1 and s["fair"]
    assert s["backends"]["hf"]["generated_tokens"] == 2 * 5 * 40
    assert s["prompts"]["full"]["facts"]["tempo"] == {"agree": 1}
    summary_md = (tmp_path / "summary.md").read_text()
    assert "ROUGE-L F1" in summary_md and "[Two, with comma](Two%2C%20with%20comma.md)" in summary_md
    assert json.loads((tmp_path / "summary.json").read_text())["tracks"] == ["One", "Two, with comma"]


def test_unequal_sampling_is_reported_and_blocks_a_winner(tmp_path):
    runs = {"gguf": recorded("gguf", {}), "hf": recorded("hf", {}, seed=99)}
    assert fairness(runs) == ["seed: gguf=1234 hf=99"]
    # A sampler setting only one side applied (llama.cpp's own min-p, say) is unfair as well.
    assert fairness({"gguf": recorded("gguf", {}), "hf": recorded("hf", {}, min_p=0.0)}) == \
        ["min_p: gguf=0.05 hf=0.0"]
    report = track_report("T", str(tmp_path), runs)
    assert report["fair"] is False
    write_reports(tmp_path / "r", [report])
    assert "UNFAIR" in (tmp_path / "r" / "T.md").read_text()
    with pytest.raises(WinnerRefused):
        apply_winner([report], [], {}, "hf", tmp_path)


def test_audio_heard_differently_is_flagged_in_every_report(tmp_path):
    """A 12-minute track: transformers' processor stops at 600 s, llama.cpp hears all 720 s. Texts
    about different audio are not like with like: the track report, its Markdown and the summary say so;
    a 4-minute track both heard whole is not flagged."""
    long_runs = {"gguf": recorded("gguf", {}, audio_seconds=720.0, audio_seconds_heard=720.0),
                 "hf": recorded("hf", {}, audio_seconds=720.0, audio_seconds_heard=600.0, audio_truncated=True)}
    short_runs = {"gguf": recorded("gguf", {}, audio_seconds=240.0, audio_seconds_heard=240.0),
                  "hf": recorded("hf", {}, audio_seconds=240.0, audio_seconds_heard=240.0)}
    long_report, short_report = track_report("Long", "/d/Long", long_runs), track_report("Short", "/d/S", short_runs)
    assert "hf heard 600.0 s of 720.0 s" in long_report["audio_heard"]["differently"]
    assert long_report["audio_heard"]["backends"]["gguf"] == {"seconds": 720.0, "of_seconds": 720.0,
                                                               "truncated": False}
    assert short_report["audio_heard"]["differently"] is None
    # Heard lengths apart by more than llama.cpp's window padding, without a truncation flag, are flagged too.
    odd = track_report("Odd", "/d/O", {"gguf": recorded("gguf", {}, audio_seconds_heard=300.0),
                                        "hf": recorded("hf", {}, audio_seconds_heard=280.0)})
    assert odd["audio_heard"]["differently"] == "gguf heard 300.0 s, hf 280.0 s"
    s = write_reports(tmp_path, [long_report, short_report])
    assert s["heard_differently"] == ["Long"]
    assert "AUDIO HEARD DIFFERENTLY" in (tmp_path / "Long.md").read_text()
    assert "| audio heard (s) | 720.0 | 600.0 |" in (tmp_path / "Long.md").read_text()
    assert "AUDIO HEARD DIFFERENTLY" not in (tmp_path / "Short.md").read_text()
    assert "AUDIO HEARD DIFFERENTLY** on 1 track(s)" in (tmp_path / "summary.md").read_text()


def test_question_metrics_are_none_where_not_recorded():
    assert question_metrics({}, "full") == {"tokens": None, "seconds": None, "tokens_per_s": None,
                                             "first_token_s": None, "finish_reason": None}


# ---- one real run -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_ab_two_tracks_on_the_standin_never_touches_info_until_a_winner(tmp_path):
    from tests.support.flamingo_hf_standin import small_prompts, standin
    from tui.ab.reports import report_name
    from tui.ab.run import run_ab, track_folders
    from tui.run.profiles import load

    root = tmp_path / "dataset"
    write_track(root, "Alpha", sine(220.0, 6.0))
    write_track(root, "Beta — ü", sine(330.0, 4.0))
    tracks, _ = track_folders([root])
    options = ABOptions(prompts_file=small_prompts(tmp_path / "p.toml", temperature=0.7),
                        backend_options={"hf": {"model_dir": str(standin("audioflamingo3"))},
                                         # No GGUF weights here: the GGUF side fails, and says why.
                                         "gguf": {"model_file": str(tmp_path / "none.gguf"),
                                                  "mmproj_file": str(tmp_path / "none.mmproj.gguf")}})
    summary, reports = run_ab(tracks, load("cpu"), tmp_path / "ab", options)
    assert not any((t.folder / f"{t.folder.name}.INFO").exists() for t in tracks)  # A/B wrote nothing there
    assert [r["track"] for r in reports] == ["Alpha", "Beta — ü"]
    for report in reports:
        hf = report["backends"]["hf"]
        assert hf["ok"] and hf["model"] == "transformers_fp32" and hf["elapsed_s"] > 0
        assert hf["sampling"] == {"temperature": 0.7, **SMALL_PROMPTS_SAMPLING}
        assert hf["peak_rss_bytes"] and hf["peak_rss_bytes"] > 50 << 20
        assert report["backends"]["gguf"]["ok"] is False and report["backends"]["gguf"]["error"]
        for prompt in PROMPT_NAMES:
            entry = report["prompts"][prompt]
            assert entry["hf"]["tokens"] >= 1 and entry["hf"]["seconds"] > 0
        assert (tmp_path / "ab" / f"{report_name(report['track'])}.md").is_file()
    assert summary["backends"]["hf"]["ok_tracks"] == 2
    # Choosing a winner writes exactly that back end's keys into the real .INFO.
    from tui.ab.reports import BACKENDS

    mirrors = {side: (tmp_path / "ab" / "tracks" / side, {t.folder.name: t for t in tracks}) for side in BACKENDS}
    written = apply_winner(reports, tracks, mirrors, "hf", tmp_path / "ab")
    assert len(written) == 2
    info = json.loads((tracks[0].folder / "Alpha.INFO").read_text())
    assert {k for k in info if k.startswith("music_flamingo_")} == set(FEATURE_KEYS) | {MODEL_KEY}
    assert info["_mirdeck"]["flamingo_hf"]["chosen_by"] == "mirdeck ab --winner hf"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_ab_with_both_back_ends_answering_on_the_standins(tmp_path):
    """Both sides real: llama-server with the converted GGUF stand-in, transformers with the same
    stand-in's HF folder; identical prompts, limits and sampling; every report field filled."""
    import subprocess

    from tests.support import flamingo_standin
    from tests.support.flamingo_hf_standin import small_prompts, standin
    from tui import paths
    from tui.ab.run import run_ab, track_folders
    from tui.run.profiles import load

    root_dir = ROOT
    built = subprocess.run([str(root_dir / "bin" / "build-llama"), "--variant", "cpu"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    digest = flamingo_standin.source_digest()
    model, mmproj = flamingo_standin.build(paths.cache_dir() / "test-standins" / digest, "random")

    root = tmp_path / "dataset"
    write_track(root, "Alpha", sine(220.0, 6.0))
    write_track(root, "Beta, with a comma", sine(330.0, 4.0))
    tracks, _ = track_folders([root])
    options = ABOptions(prompts_file=small_prompts(tmp_path / "p.toml", temperature=0.0),
                        backend_options={"hf": {"model_dir": str(standin("audioflamingo3"))},
                                         "gguf": {"model_file": str(model), "mmproj_file": str(mmproj),
                                                  "model_label": "gguf_standin-random"}})
    summary, reports = run_ab(tracks, load("cpu"), tmp_path / "ab", options)
    assert not any((t.folder / f"{t.folder.name}.INFO").exists() for t in tracks)
    for report in reports:
        for side in ("gguf", "hf"):
            assert report["backends"][side]["ok"], report["backends"][side]
        for prompt in PROMPT_NAMES:
            entry = report["prompts"][prompt]
            for side in ("gguf", "hf"):
                assert entry[side]["tokens"] >= 1 and entry[side]["seconds"] > 0
            if entry["gguf"]["text"] and entry["hf"]["text"]:
                assert 0.0 <= entry["rouge_l_f1"] <= 1.0
    assert summary["backends"]["gguf"]["ok_tracks"] == 2 and summary["backends"]["hf"]["ok_tracks"] == 2
    # Both back ends recorded every sampler setting of the file, identically, so the run is fair.
    for report in reports:
        assert report["fair"], report["unfair_because"]
        for side in ("gguf", "hf"):
            assert report["backends"][side]["sampling"] == {"temperature": 0.0, **SMALL_PROMPTS_SAMPLING}
    assert (tmp_path / "ab" / "summary.md").is_file() and (tmp_path / "ab" / "summary.json").is_file()



def test_a_winner_chosen_after_reading_the_report_goes_into_the_real_info(tmp_path):
    import subprocess
    import sys

    from tests.support.ab_reports import write_report_with_mirrors
    from tui.run.store import read_info

    dataset = tmp_path / "ds"
    report = write_report_with_mirrors(tmp_path / "ab", dataset)
    # The user's own key stays; the Flamingo keys become the chosen back end's.
    (dataset / "Alpha" / "Alpha.INFO").write_text(json.dumps({"my_caption": "mine"}))
    done = subprocess.run([sys.executable, "-m", "tui.cli", "ab", "--apply", str(report), "--winner", "gguf"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote the gguf answers into 2 tracks' .INFO files" in done.stdout
    for name in ("Alpha", "Beta"):
        info = read_info(dataset / name / f"{name}.INFO")
        assert info["music_flamingo_full"] == f"{name}: gguf says full"
        assert info["music_flamingo_model"] == "gguf_Q8_0"
        prov = info["_mirdeck"]["flamingo_gguf"]
        assert prov["chosen_by"] == "mirdeck ab --apply --winner gguf" and prov["ab_report"].startswith(str(report))
    assert read_info(dataset / "Alpha" / "Alpha.INFO")["my_caption"] == "mine"
    # Changing one's mind replaces them again, with the other side's.
    from tui.ab.run import apply_winner_from_report

    written, left = apply_winner_from_report(report, "hf", "test")
    assert len(written) == 2 and not left
    assert read_info(dataset / "Beta" / "Beta.INFO")["music_flamingo_full"] == "Beta: hf says full"


def test_no_winner_is_applied_from_an_unfair_or_damaged_report(tmp_path):
    from tests.support.ab_reports import write_report_with_mirrors
    from tui.ab.reports import report_name
    from tui.ab.run import apply_winner_from_report

    unfair = write_report_with_mirrors(tmp_path / "unfair", tmp_path / "ds1", unfair=True)
    with pytest.raises(WinnerRefused, match="not fair"):
        apply_winner_from_report(unfair, "gguf", "test")
    damaged = write_report_with_mirrors(tmp_path / "damaged", tmp_path / "ds2")
    (damaged / f"{report_name('Beta')}.json").write_text("{not json")
    with pytest.raises(WinnerRefused, match="fairness is unknown"):
        apply_winner_from_report(damaged, "hf", "test")
    for dataset in (tmp_path / "ds1", tmp_path / "ds2"):
        assert not list(dataset.glob("*/*.INFO"))  # nothing written anywhere


def test_apply_leaves_out_tracks_it_cannot_place_and_writes_the_others(tmp_path, monkeypatch):
    from tests.support.ab_reports import write_report_with_mirrors
    from tui.ab.reports import report_name
    from tui.ab.run import apply_winner_from_report

    dataset = tmp_path / "ds"
    report = write_report_with_mirrors(tmp_path / "ab", dataset, tracks=("Alpha", "Beta", "Gamma"))
    # A report that named a folder relative to where the A/B ran: from elsewhere it would be another track.
    beta = report / f"{report_name('Beta')}.json"
    beta.write_text(beta.read_text().replace(str(dataset / "Beta"), "ds/Beta"))
    monkeypatch.chdir(tmp_path)  # where a relative ds/Beta would (wrongly) be found
    # A mirror whose .INFO is damaged.
    (report / "tracks" / "gguf" / "Gamma" / "Gamma.INFO").write_text("{broken")
    written, left = apply_winner_from_report(report, "gguf", "test")
    assert written == [str((dataset / "Alpha").resolve())]
    assert any("relative to where the A/B ran" in line for line in left)
    assert any("Gamma.INFO" in line for line in left)
    assert not (dataset / "Beta" / "Beta.INFO").exists() and not (dataset / "Gamma" / "Gamma.INFO").exists()
