"""The live view's text-generation panel on real runs: the real dashboard on the real engine, the real
worker subprocesses, the tiny Flamingo stand-ins (llama.cpp's llama-server for GGUF, transformers for
HF). What the panel shows must be what each track's provenance says."""
from __future__ import annotations

import os

import pytest

from tests.support.dashboard import engine_for, sync, wait_for
from tests.support.helpers import info_of, sine, write_track
from tui import paths
from tui.dashboard.app import MirdeckApp
from tui.dashboard.widgets.decode_panel import tokens_per_s
from tui.gpu import DeviceReading, GpuSnapshot, ProcessMemory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SIZE = (100, 40)
SERVER_BYTES = 123 << 20


class LlamaServerHoldsMemory:
    """A GPU probe (the interface NVML's and sysfs's probes have) on a machine without a GPU: every
    ``llama-server`` among the pids it is asked about holds ``SERVER_BYTES``, the Python workers
    nothing, as on a real card where the server, not the worker, holds the model."""

    source = "test"

    def read(self, pids=()):
        held = {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as fh:
                    name = fh.read().strip()
            except OSError:
                continue
            if name == "llama-server":
                held[pid] = ProcessMemory(pid, vram=SERVER_BYTES, devices=(0,))
        device = DeviceReading(index=0, name="test card", vram_used=sum(m.vram for m in held.values()),
                               vram_total=16 << 30)
        return GpuSnapshot(source=self.source, devices=(device,), processes=held)

    def close(self) -> None:
        pass


def dataset_of(tmp_path, seconds=(4.0, 6.0, 5.0)):
    root = tmp_path / "ds"
    for i, length in enumerate(seconds):
        write_track(root, f"Track {i}", sine(220.0 * (i + 1), length))
    return root


async def watch(tmp_path, dataset, module, options, probe=None):
    """Run ``module`` on ``dataset`` in the dashboard; returns (app, the panel's row while the last
    track was decoding, the panel's row at the end, the order tracks finished in)."""
    engine = engine_for(dataset, tmp_path, only=[module], jobs=1, module_options={module: options})
    finished = []
    engine.subscribe(lambda e: finished.append(e.track) if e.name == "module_finished" else None)
    app = MirdeckApp(engine=engine, probe=probe, probe_interval=0.2 if probe else 0)
    async with app.run_test(size=SIZE) as pilot:
        row = lambda: app.view.modules[module]  # noqa: E731
        panel = lambda: app.screen.query_one("#decode-rates")  # noqa: E731
        running = None
        if probe is not None:  # the server's memory while it runs (the workers exit at the end)
            await wait_for(pilot, lambda: row().done >= 1 and row().vram is not None and app.view.running,
                           timeout=600, what="a finished track and a GPU reading of the worker")
            await pilot.pause(0.3)
            running = panel().cells(module)
        await wait_for(pilot, lambda: app.view.finished_at is not None, timeout=900, what="the run to finish")
        await pilot.pause(0.5)
        assert panel().display
        return app, running, panel().cells(module), finished


def expected(dataset, module, finished):
    """The panel's figures from the .INFO files' provenance alone."""
    records = {name: info_of(dataset / name)["_mirdeck"][module] for name in finished}
    decodes = [records[name]["decode"] for name in finished]
    for record in records.values():  # the record counts what the questions' own records count
        assert record["decode"]["generated_tokens"] == sum(q["generated_tokens"] for q in record["questions"].values())
        assert record["decode"]["generated_tokens"] > 0 and record["decode"]["seconds"] > 0
    tokens = sum(d["generated_tokens"] for d in decodes)
    seconds = sum(d["seconds"] for d in decodes)
    last = decodes[-1]
    assert last["tokens_per_s"] == round(last["generated_tokens"] / last["seconds"], 2)
    return {"tokens": f"{tokens:,}", "tok/s last": tokens_per_s(last["generated_tokens"] / last["seconds"]),
            "tok/s mean": tokens_per_s(tokens / seconds)}, records


@pytest.fixture(scope="session")
def gguf_standin(llama_bin_dir):
    from tests.support import flamingo_standin

    return flamingo_standin.build(paths.cache_dir() / "test-standins" / flamingo_standin.source_digest(), "random")


@pytest.fixture
def small_prompts(tmp_path):
    from tests.support.flamingo_hf_standin import small_prompts

    return small_prompts(tmp_path / "prompts.toml")


@pytest.mark.parametrize("parallel", [5, 1])
@sync
async def test_gguf_tokens_and_rates_are_the_provenance_and_the_server_memory_is_the_worker_s(
        tmp_path, gguf_standin, small_prompts, parallel):
    dataset = dataset_of(tmp_path)
    model, mmproj = gguf_standin
    options = {"model_file": str(model), "mmproj_file": str(mmproj), "prompts_file": str(small_prompts),
               "parallel": parallel}
    app, running, shown, finished = await watch(tmp_path, dataset, "flamingo_gguf", options,
                                                probe=LlamaServerHoldsMemory())
    assert len(finished) == 3
    want, records = expected(dataset, "flamingo_gguf", finished)
    assert {k: shown[k] for k in want} == want
    for record in records.values():
        assert record["decode"]["batch_size"] == parallel
    # The worker holds nothing itself: what the panel shows is its llama-server child's.
    assert running["VRAM now"] == "123M" and shown["peak"] == "123M"
    assert shown["VRAM now"] == "–"  # the run is over: no worker holds anything now


@sync
async def test_hf_tokens_and_rates_are_the_provenance(tmp_path, small_prompts):
    from tests.support.flamingo_hf_standin import standin

    dataset = dataset_of(tmp_path, seconds=(4.0, 5.0))
    options = {"model_dir": str(standin("audioflamingo3")), "prompts_file": str(small_prompts)}
    app, _, shown, finished = await watch(tmp_path, dataset, "flamingo_hf", options)
    assert len(finished) == 2
    want, records = expected(dataset, "flamingo_hf", finished)
    assert {k: shown[k] for k in want} == want
    assert all(r["decode"]["batch_size"] == 5 for r in records.values())
    assert shown["VRAM now"] == "–" and shown["peak"] == "–"  # no GPU probe: not measured, not zero
