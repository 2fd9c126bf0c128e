"""The GPU probe's parsers on fixture trees copied from real machines' sysfs and /proc files."""
from __future__ import annotations

from pathlib import Path

import pytest

from tui.gpu import CachedProbe, GpuSnapshot, ProbeUnavailable, open_probe
from tui.gpu.fdinfo import parse_client, process_memory
from tui.gpu.sysfs import SysfsProbe, read_devices
from tui.gpu.units import parse_size

FIX = Path(__file__).parent / "fixtures"
KIB = 1024


def test_sizes_parse_with_and_without_units_and_reject_garbage():
    assert parse_size("8192 KiB") == 8 * 1024 * 1024
    assert parse_size("0") == 0
    assert parse_size("3 MiB") == 3 << 20
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
    with pytest.raises(ValueError):
        parse_size("")


def test_discrete_card_is_read_and_the_intel_igpu_beside_it_is_ignored():
    devices = read_devices(FIX / "sysfs-rx9070xt-6.14")
    assert len(devices) == 1
    card = devices[0]
    assert card.name == "Radeon RX 9070 series"
    assert card.vram_total == 17095983104 and card.vram_used == 14925799424
    assert card.gtt_used == 429916160 and card.gtt_total == 33300197376
    assert card.busy_percent == 97.0
    assert card.temperature_c == 72.0  # temp1 is the edge sensor, not the 81 °C hotspot
    assert card.bus_id == "0000:03:00.0"


def test_apu_reports_gtt_where_its_models_live_and_no_busy_value_is_invented():
    (apu,) = read_devices(FIX / "sysfs-780m-apu-6.6")
    assert apu.name == "Radeon 780M (APU)"
    assert apu.gtt_used == 9663676416
    assert apu.busy_percent is None  # the file is missing: unknown, not 0 %
    assert apu.temperature_c == 55.0


def test_kernel_5_15_pasid_format_counts_a_duplicated_descriptor_once():
    memory = process_memory([4101], proc_root=FIX / "proc-5.15")
    assert memory[4101].vram == 1290360 * KIB
    assert memory[4101].gtt == 5640 * KIB


def test_kernel_6_2_drm_memory_keys_sum_clients_and_skip_duplicates():
    memory = process_memory([5200, 5201], proc_root=FIX / "proc-6.2", bus_to_index={"0000:03:00.0": 0})
    assert memory[5200].vram == (2831155 + 1024) * KIB  # client 19 (twice) + client 23
    assert memory[5200].gtt == (6144 + 2048) * KIB
    assert memory[5200].devices == (0,)
    assert 5201 not in memory  # holds no GPU client: absent, not a zero row


def test_kernel_6_10_prefers_resident_and_counts_a_shared_client_id_once_across_workers():
    memory = process_memory([7300, 7301], proc_root=FIX / "proc-6.10")
    assert memory[7300].vram == 9332326 * KIB
    # 7301 holds client 71 too (passed to it); only its own client 72 is attributed to it,
    # and resident (1153434 KiB) wins over total (1200000 KiB).
    assert memory[7301].vram == 1153434 * KIB
    total = sum(m.vram for m in memory.values())
    assert total == (9332326 + 1153434) * KIB


def test_new_format_without_legacy_aliases_reads_resident_vram():
    text = ("drm-driver:\tamdgpu\ndrm-client-id:\t5\ndrm-pdev:\t0000:03:00.0\n"
            "drm-total-vram:\t2048 KiB\ndrm-resident-vram:\t1024 KiB\ndrm-total-gtt:\t0\n")
    client = parse_client(text)
    assert client.vram == 1024 * KIB and client.gtt == 0


def test_intel_local_region_counts_as_vram():
    text = "drm-driver:\txe\ndrm-client-id:\t9\ndrm-total-local0:\t4096 KiB\ndrm-resident-local0:\t4000 KiB\n"
    assert parse_client(text).vram == 4000 * KIB


def test_descriptor_that_is_not_a_drm_client_is_none():
    assert parse_client("pos:\t0\nflags:\t02\nmnt_id:\t27\n") is None


def test_missing_process_is_left_out_not_an_error(tmp_path):
    assert process_memory([999999], proc_root=tmp_path) == {}


def test_sysfs_probe_matches_worker_memory_to_the_card(tmp_path):
    probe = SysfsProbe(drm_root=FIX / "sysfs-rx9070xt-6.14", proc_root=FIX / "proc-6.10")
    snap = probe.read([7300, 7301])
    assert snap.source == "sysfs"
    assert snap.devices[0].vram_used == 14925799424
    assert snap.processes[7300].devices == (0,)


def test_sysfs_probe_refuses_a_machine_without_amdgpu(tmp_path):
    with pytest.raises(ProbeUnavailable, match="no amdgpu device"):
        SysfsProbe(drm_root=tmp_path)


def test_open_probe_falls_back_to_a_none_probe_that_names_every_reason(monkeypatch):
    import tui.gpu as gpu

    def unavailable(reason):
        def factory():
            raise ProbeUnavailable(reason)
        return factory

    monkeypatch.setattr(gpu, "_candidates", lambda: [("nvml", unavailable("no driver")),
                                                     ("sysfs", unavailable("no card"))])
    probe = open_probe()
    snap = probe.read([1])
    assert probe.source == "none" and snap.devices == ()
    assert "nvml: no driver" in snap.note and "sysfs: no card" in snap.note


def test_open_probe_picks_the_first_source_that_works(monkeypatch):
    import tui.gpu as gpu

    def broken():
        raise ProbeUnavailable("absent")

    monkeypatch.setattr(gpu, "_candidates", lambda: [
        ("nvml", broken), ("sysfs", lambda: SysfsProbe(FIX / "sysfs-780m-apu-6.6", FIX / "proc-6.2"))])
    assert open_probe().source == "sysfs"


def test_nvml_through_its_real_interface():
    """On a machine with an NVIDIA driver this reads real devices; elsewhere NVML's own
    library-not-found error becomes ProbeUnavailable with the reason."""
    from tui.gpu.nvml import NvmlProbe

    try:
        probe = NvmlProbe()
    except ProbeUnavailable as exc:
        assert "NVML" in str(exc) or "nvidia-ml-py" in str(exc)
        return
    import os

    snap = probe.read([os.getpid()])
    probe.close()
    assert snap.devices and all(d.vram_total and d.vram_total > 0 for d in snap.devices)
    assert all(0 <= d.vram_used <= d.vram_total for d in snap.devices)


def test_cached_probe_reuses_a_fresh_reading_and_rereads_when_stale_or_pids_change():
    reads = []

    class Counting:
        source = "test"

        def read(self, pids=()):
            reads.append(frozenset(pids))
            return GpuSnapshot(source="test")

        def close(self):
            pass

    now = [0.0]
    cached = CachedProbe(Counting(), ttl=0.5, clock=lambda: now[0])
    cached.read([1])
    now[0] = 0.3
    cached.read([1])
    assert len(reads) == 1
    cached.read([1, 2])
    assert len(reads) == 2
    now[0] = 1.0
    cached.read([1, 2])
    assert len(reads) == 3


class ChildHoldsMemory:
    """A probe that, as NVML does for llama-server, reports memory only for the pid that holds it."""

    source = "test"

    def __init__(self, holder: int, vram: int):
        self.holder, self.vram, self.asked = holder, vram, set()

    def read(self, pids=()):
        from tui.gpu.model import GpuSnapshot, ProcessMemory

        self.asked = set(pids)
        held = {self.holder: ProcessMemory(self.holder, vram=self.vram, devices=(0,))}
        return GpuSnapshot("test", processes={p: m for p, m in held.items() if p in self.asked})

    def close(self):
        pass


def test_a_workers_gpu_memory_includes_the_helpers_it_started():
    """flamingo_gguf's weights sit in its child llama-server: the worker's row must show them."""
    import subprocess
    import sys
    import time

    from tui.dashboard.app import MirdeckApp

    # A real worker-like process with a real grandchild (worker -> shell -> sleeper).
    script = "import subprocess, sys, time; p = subprocess.Popen(['sh', '-c', 'sleep 30']); " \
             "print(p.pid, flush=True); time.sleep(30)"
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(worker.stdout.readline())
        time.sleep(0.2)
        probe = ChildHoldsMemory(helper, vram=8 << 30)
        app = MirdeckApp(probe=probe, host_reader=lambda pids: None)
        gpu, _ = app.read_probes([worker.pid])
        assert helper in probe.asked  # the helper was read, not only the worker's own pid
        assert gpu.processes[worker.pid].vram == 8 << 30  # and credited to the worker
        assert helper not in gpu.processes
    finally:
        worker.kill()
        worker.wait()
