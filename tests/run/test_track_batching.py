"""Several tracks in one call to a worker (``tracks_per_call``): the real engine and worker
subprocesses with a test backend that batches; every track is still answered, recorded and
failed on its own."""
from __future__ import annotations

import pytest

from backends.spec import BackendSpec, tracks_per_call_for
from tests.support.helpers import events_named, info_of, run_engine, sine, write_track

MODULE = "batchy"


@pytest.fixture(autouse=True)
def batchy(monkeypatch, tmp_path):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", "tests.support.fake_backends.batchy")
    monkeypatch.setenv("MIRDECK_PCM_DIR", str(tmp_path / "shm"))


def dataset(tmp_path, names):
    root = tmp_path / "ds"
    for i, name in enumerate(names):
        # Each track its own length, so a result given to the wrong track shows.
        write_track(root, name, sine(220.0, 1.0 + 0.25 * i, rate=8000), rate=8000)
    return root


def prov(folder):
    return info_of(folder)["_mirdeck"][MODULE]


def test_five_tracks_go_in_calls_of_three_and_each_keeps_its_own_result(tmp_path):
    names = [f"t{i}" for i in range(5)]
    root = dataset(tmp_path, names)
    events, stats = run_engine(root, only=[MODULE], module_options={MODULE: {"tracks_per_call": 3}})
    assert not events_named(events, "module_failed")
    assert stats[MODULE].done == 5
    provs = {n: prov(root / n) for n in names}
    for i, name in enumerate(names):
        assert info_of(root / name)["batchy_frames"] == int(8000 * (1.0 + 0.25 * i))
        assert provs[name]["status"] == "ok" and name in provs[name]["call_tracks"]
        assert provs[name]["tracks_per_call"] == len(provs[name]["call_tracks"])
    # A call leaves when full or when no more are to come: 3, then 2. Which tracks share a call is
    # the order their audio was decoded in (two decode workers), not fixed.
    calls = sorted({tuple(p["call_tracks"]) for p in provs.values()}, key=len, reverse=True)
    assert [len(call) for call in calls] == [3, 2]
    assert sorted(name for call in calls for name in call) == names
    # Each track's time is its share of the call's, split by audio length: the shares add up to the call.
    for call in calls:
        walls = {provs[n]["call_wall_s"] for n in call}
        assert len(walls) == 1
        assert sum(provs[n]["elapsed_s"] for n in call) == pytest.approx(walls.pop(), abs=1e-3)
    # Events stay per track: one start, one progress and one finish for each.
    for kind in ("module_started", "module_progress", "module_finished"):
        assert sorted(e.track for e in events_named(events, kind) if e.module == MODULE) == names
    assert len({e.worker_pid for e in events_named(events, "module_started") if e.module == MODULE}) == 1


def test_a_bad_track_and_a_crashing_track_fail_alone(tmp_path):
    names = ["a", "b bad", "c", "d crash", "e"]
    root = dataset(tmp_path, names)
    events, stats = run_engine(root, only=[MODULE], module_options={MODULE: {"tracks_per_call": 3}})
    assert stats[MODULE].done == 3 and stats[MODULE].failed == 2
    for name in ("a", "c", "e"):
        assert prov(root / name)["status"] == "ok" and "batchy_frames" in info_of(root / name)
    bad = prov(root / "b bad")
    assert bad["status"] == "error" and bad["error"]["kind"] == "bad_input"
    assert "b bad" in bad["error"]["message"] and "refuses" in bad["error"]["message"]
    crashed = prov(root / "d crash")
    assert crashed["status"] == "error" and crashed["error"]["kind"] == "crash"
    assert "batchy_frames" not in info_of(root / "d crash")
    # The crash took down d's call (which tracks shared it is the order their audio was decoded in):
    # each of them was retried alone, and only d failed again.
    final = {e.track: e for e in events_named(events, "module_failed") if e.attempt == 2}
    assert set(final) == {"d crash"}
    retried = {e.track for e in events_named(events, "module_failed") if e.attempt == 1 and "retrying" in e.message}
    assert "d crash" in retried and len(retried) in (2, 3)  # a call of 3, or the last one, of 2
    for name in retried - {"d crash", "b bad"}:
        assert prov(root / name)["tracks_per_call"] == 1
    for name in {"a", "c", "e"} - retried:
        assert prov(root / name)["tracks_per_call"] == len(prov(root / name)["call_tracks"]) > 1


def test_a_graceful_stop_finishes_the_call_in_flight_and_sends_no_other(tmp_path):
    names = [f"s{i}" for i in range(6)]
    root = dataset(tmp_path, names)
    stopped = []

    def stop_at_first_start(engine, event):
        if event.name == "module_started" and event.module == MODULE and not stopped:
            stopped.append(event.track)
            engine.stop()

    events, stats = run_engine(root, only=[MODULE], on_event=stop_at_first_start,
                               module_options={MODULE: {"tracks_per_call": 2, "sleep": 1.0}})
    finished = sorted(e.track for e in events_named(events, "module_finished"))
    assert len(finished) == 2 and stopped[0] in finished  # the call being computed when the stop came
    assert stats[MODULE].done == 2 and stats[MODULE].failed == 0
    left = events_named(events, "run_finished")[0].left
    assert sorted(left) == sorted(set(names) - set(finished))
    for name in left:  # never recorded as failed: the next run does them
        assert MODULE not in info_of(root / name).get("_mirdeck", {})


def test_one_track_per_call_unless_asked_on_a_cpu_profile(tmp_path):
    root = dataset(tmp_path, ["x", "y", "z"])
    events, stats = run_engine(root, only=[MODULE])
    assert stats[MODULE].done == 3
    assert all(prov(root / n)["tracks_per_call"] == 1 and "call_tracks" in prov(root / n) for n in "xyz")


def spec(**kw):
    return BackendSpec(name="m", version="1", description="", keys=("k",), device="gpu", **kw)


def test_tracks_per_call_is_sized_from_the_option_and_the_vram_budget():
    batching = spec(vram_gb=10.0, tracks_per_call=4, vram_per_extra_track_gb=3.0)
    assert tracks_per_call_for(spec(), {"tracks_per_call": 8}, on_gpu=True, vram_budget_gb=0) == (1, "")
    assert tracks_per_call_for(batching, {}, on_gpu=True, vram_budget_gb=0) == (4, "")
    assert tracks_per_call_for(batching, {}, on_gpu=False, vram_budget_gb=0) == (1, "")
    assert tracks_per_call_for(batching, {"tracks_per_call": 3}, on_gpu=False, vram_budget_gb=0) == (3, "")
    # 10 GB for the model and 3 per further track: 24 GB hold 1 + 4 = 5 tracks, 16 GB hold 3.
    assert tracks_per_call_for(batching, {"tracks_per_call": 5}, on_gpu=True, vram_budget_gb=24) == (5, "")
    size, warning = tracks_per_call_for(batching, {"tracks_per_call": 5}, on_gpu=True, vram_budget_gb=16)
    assert size == 3 and "VRAM budget of 16 GB" in warning
    assert tracks_per_call_for(batching, {}, on_gpu=True, vram_budget_gb=12) == (1, "")
    size, warning = tracks_per_call_for(batching, {"tracks_per_call": "two"}, on_gpu=True, vram_budget_gb=0)
    assert size == 1 and "whole number" in warning


def test_the_engine_sizes_flamingo_calls_from_the_vram_left_beside_its_sweep(tmp_path):
    """The cuda profile's 22 GB: flamingo_gguf's 10 GB model and 3.5 GB per further track hold its
    default of 4 tracks alone in a sweep; beside audiobox's 3.5 GB, 1 + (22 - 3.5 - 10) // 3.5 = 3. A
    CPU-only profile sends one track per call."""
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load

    def sized(profile, sweep):
        return Engine(tmp_path, load(profile), RunOptions()).tracks_per_call("flamingo_gguf", sweep=sweep)

    assert sized("cuda", ["flamingo_gguf"]) == 4
    assert sized("cuda", ["audio_info", "audiobox", "flamingo_gguf"]) == 3
    assert sized("cpu", ["flamingo_gguf"]) == 1
