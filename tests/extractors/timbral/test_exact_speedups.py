"""Each value-identical speed-up of the timbral layer against the package's own function, on
constructed and varied signals: the same numbers, bit for bit (``==`` / ``array_equal``, never a
tolerance), so any change of arithmetic or order in a fast path fails here."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

RATE = 44100


@pytest.fixture(scope="module")
def package():
    """The package with the compatibility layer only, and its original functions by name."""
    from backends.extractors.timbral import compat as timbral_compat

    return timbral_compat.load()


def _unwrapped(function):
    return getattr(function, "__wrapped__", function)


def _material(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Signals that take different branches: decaying noise bursts (holds and decays), tones,
    a beating pair (many spectral peaks), a quiet stretch of digital silence, a DC step, and
    music-like sums of harmonics with an envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    bursts = rng.standard_normal(n) * np.exp(-((t % 0.37) / 0.05))
    tones = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 3520 * t)
    beating = np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 470 * t)
    chords = sum(np.sin(2 * np.pi * f * k * t) / k for f in (110, 165, 220) for k in range(1, 8))
    chords = chords * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t) ** 2)
    gapped = bursts + 0.1 * tones
    gapped[n // 3:n // 2] = 0.0
    step = np.where(t > seconds / 2, 0.3, -0.1) + 1e-3 * rng.standard_normal(n)
    low = signal.sosfilt(signal.butter(4, 200, "lowpass", fs=RATE, output="sos"), rng.standard_normal(n))
    return {"bursts": bursts, "tones": tones, "beating": beating, "chords": chords,
            "gapped": gapped, "step": step, "low": low}


MATERIAL = _material(3.0, 21)


@pytest.mark.parametrize("name", sorted(MATERIAL))
@pytest.mark.parametrize("decay_time", [0.2, 0.1])
def test_sample_and_hold_is_the_packages(package, name, decay_time):
    from backends.extractors.timbral import speedups

    original = _unwrapped(package.timbral_util.sample_and_hold_envelope_calculation)
    fast = speedups._compiled_sample_and_hold()
    x = MATERIAL[name]
    expected = original(x, RATE, decay_time=decay_time)
    got = fast(x, RATE, decay_time=decay_time)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_sample_and_hold_peak_with_nan_is_the_builtins(package):
    """Where NumPy's max and Python's differ (a NaN), the builtin's answer is kept."""
    from backends.extractors.timbral import speedups

    original = _unwrapped(package.timbral_util.sample_and_hold_envelope_calculation)
    x = MATERIAL["bursts"][:5000].copy()
    x[10] = np.nan
    got = speedups._compiled_sample_and_hold()(x, RATE)
    expected = original(x, RATE)
    assert np.array_equal(got, expected, equal_nan=True)


def _package_filters(util):
    """The (b, a) pairs the timbral functions filter with: brightness's and depth's whole-track
    Butterworth sections, and the specific-loudness bank's 1/3-octave bands and anti-aliasing."""
    filters = [signal.butter(2, f / (0.5 * RATE), kind) for f, kind in
               ((20, "high"), (3000, "high"), (30, "low"), (200, "low"))]
    ff, _, _ = util.midbands(25, 12500, RATE)
    filters += [util.filter_design2(f, RATE, 4) for f in ff[::4]]
    return filters + [signal.cheby1(2, 0.1, 0.4)]


@pytest.mark.parametrize("name", sorted(MATERIAL))
def test_compiled_lfilter_is_scipys(package, name):
    """Every sample of a whole signal and of each 4096-sample window, for every filter the
    package uses: scipy's own numbers (the lowest bands, designed at the full rate here, overflow
    to NaN: in the same samples)."""
    from backends.extractors.timbral.iir_filter import lfilter

    x = MATERIAL[name]
    windows = _unwrapped(package.timbral_util.window_audio)(x, 4096)
    for b, a in _package_filters(package.timbral_util):
        assert np.array_equal(lfilter(b, a, x), signal.lfilter(b, a, x), equal_nan=True)
        assert np.array_equal(lfilter(b, a, windows), signal.lfilter(b, a, windows), equal_nan=True)
        assert np.array_equal(lfilter(b, a, x[::3]), signal.lfilter(b, a, x[::3]), equal_nan=True)


def test_compiled_lfilter_leaves_other_calls_to_scipy():
    from backends.extractors.timbral.iir_filter import lfilter

    x = MATERIAL["chords"][:5000]
    b, a = signal.butter(2, 0.1)
    zi = signal.lfilter_zi(b, a)
    got, state = lfilter(b, a, x, zi=zi * x[0])
    expected, e_state = signal.lfilter(b, a, x, zi=zi * x[0])
    assert np.array_equal(got, expected) and np.array_equal(state, e_state)
    columns = np.stack([x, x[::-1]], axis=1)
    assert np.array_equal(lfilter(b, a, columns, axis=0), signal.lfilter(b, a, columns, axis=0))
    assert np.array_equal(lfilter(b, a, x.astype(np.float32)), signal.lfilter(b, a, x.astype(np.float32)))
    fir = np.array([0.25, 0.5, 0.25])
    assert np.array_equal(lfilter(fir, [1.0], x), signal.lfilter(fir, [1.0], x))
    unnormalised = (b * 3.0, a * 3.0)  # a[0] = 3: both divide the coefficients first
    assert np.array_equal(lfilter(*unnormalised, x), signal.lfilter(*unnormalised, x))


@pytest.mark.parametrize("name", ["bursts", "chords", "gapped", "low", "step"])
def test_batched_third_octave_filter_bank_is_the_packages(package, name):
    """Every window's 28 band levels and total from the all-windows filter bank."""
    from backends.extractors.timbral import speedups, third_octaves

    util = package.timbral_util
    speedups.install(package)
    original = _unwrapped(util.filter_third_octaves_downsample)
    windows = _unwrapped(util.window_audio)(MATERIAL[name], 4096)
    for fs in (RATE, 48000):
        got = third_octaves.batch(util, windows, 100.0, fs, 25, 12500, 4)
        assert len(got) == len(windows)
        for row, (total, levels, bands) in zip(windows, got):
            e_total, e_levels, e_bands = original(row.copy(), 100.0, fs, 25, 12500, 4)
            assert total == e_total
            assert np.array_equal(levels, e_levels) and np.array_equal(bands, e_bands)
    silent = np.zeros((3, 4096))  # no band rises above zero: the package's -inf branch
    for (total, levels, _), row in zip(third_octaves.batch(util, silent, 100.0, RATE, 25, 12500, 4),
                                       silent):
        e_total, e_levels, _ = original(row, 100.0, RATE, 25, 12500, 4)
        assert total == e_total and np.array_equal(levels, e_levels)


@pytest.mark.parametrize("name", ["bursts", "chords", "gapped", "low"])
def test_specific_loudness_through_the_window_batch_is_the_packages(package, name, monkeypatch):
    """The four callers' path: windows cut, then specific loudness asked window by window."""
    from backends.extractors.timbral import speedups

    speedups.install(package)
    util = package.timbral_util
    monkeypatch.setattr(speedups, "LOUDNESS_BATCH_WINDOWS", 7)  # several batches
    original = _unwrapped(util.specific_loudness)
    x = MATERIAL[name]
    with speedups.track_cache():
        windows = util.window_audio(x)
        got = [util.specific_loudness(row, Pref=100.0, fs=RATE, Mod=0) for row in windows]
        assert speedups._octave_levels  # the batch was used
    expected = [original(row, Pref=100.0, fs=RATE, Mod=0) for row in windows]
    for (total, single), (e_total, e_single) in zip(got, expected):
        assert total == e_total and np.array_equal(single, e_single)


LOUDNESS_CASES = [(f, n) for f in ("booming", "sharpness", "warmth", "hardness", "depth", "roughness")
                  for n in ("chords", "gapped")]


@pytest.fixture(scope="module")
def unaccelerated(tmp_path_factory):
    """The package's own value of each function and case, in a fresh process (in this one the
    package's modules are shared and may already carry the accelerations)."""
    import json
    import subprocess
    import sys

    from tui.paths import ROOT

    folder = tmp_path_factory.mktemp("loudness")
    for _, name in LOUDNESS_CASES:
        np.save(folder / f"{name}.npy", _stereo(name))
    code = ("import json, sys, numpy as np\n"
            "from backends.extractors.timbral import compat\n"
            "p = compat.load()\n"
            f"cases = {LOUDNESS_CASES!r}\n"
            "print(json.dumps({f + '/' + n: float(getattr(p, 'timbral_' + f)("
            f"np.load(sys.argv[1] + '/' + n + '.npy'), fs={RATE})) for f, n in cases}}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stereo(name: str) -> np.ndarray:
    return np.stack([MATERIAL[name], MATERIAL[name] * 0.8], axis=1) * 0.5


@pytest.mark.slow
@pytest.mark.parametrize("function, name", LOUDNESS_CASES)
def test_loudness_functions_with_the_batch_are_the_packages(package, unaccelerated, function, name):
    """The functions that use the batched loudness, the shared onset envelopes and the compiled
    peak picking, whole, with every acceleration, inside one track's caches: the package's value."""
    from backends.extractors.timbral import speedups

    speedups.install(package)
    with speedups.track_cache():
        got = float(getattr(package, f"timbral_{function}")(_stereo(name), fs=RATE))
    assert got == unaccelerated[f"{function}/{name}"]


@pytest.mark.parametrize("seed", range(6))
def test_max_loglf_with_kept_terms_is_the_packages(package, seed):
    """reverb's maximum-likelihood decay fit, for each frame length it meets and others."""
    from backends.extractors.timbral import reverb_frames

    reverb = package.Timbral_Reverb
    par = reverb.init_rt_estimate_e(RATE)
    fit = reverb_frames.max_loglf(reverb.max_loglf)
    rng = np.random.default_rng(seed)
    for cnt in (3, 4, 5, 6, 3, 5):  # lengths repeat: the kept terms are reused
        n = cnt * par["N_sub"] + (seed % 2)
        h = rng.standard_normal(n) * np.exp(-np.arange(n) / rng.uniform(50, 2000))
        ml, ll = fit(h, par["a"], par["Tquant"])
        e_ml, e_ll = reverb.max_loglf(h.copy(), par["a"], par["Tquant"])
        assert ml == e_ml and np.array_equal(ll, e_ll)


def _peak_frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised magnitude spectra of varied frames, as roughness hands them to detect_peaks."""
    frames = []
    for name, x in MATERIAL.items():
        for start in range(0, len(x) - 4096, 6000):
            frame = x[start:start + 2205] * np.hamming(2207)[1:-1]
            spec = np.abs(np.fft.fft(np.concatenate([frame, np.zeros(4096 - 2205)]))[:2049])
            frames.append((spec, spec))
    rng = np.random.default_rng(3)
    for _ in range(20):  # plateaus, ties and narrow notches
        spec = np.round(rng.random(300) * 4) / 4
        frames.append((spec, spec * 7.0))
    return frames


def test_compiled_peak_picking_is_the_packages(package):
    from backends.extractors.timbral import roughness_blocks

    util = package.timbral_util
    original = _unwrapped(util.detect_peaks)
    frames = _peak_frames()
    lo = min(np.min(s) for s, _ in frames)
    hi = max(np.max(s) for s, _ in frames)
    kept = 0
    for spec, unprocessed in frames:
        norm = (spec - lo) / (hi - lo) if len(spec) == 2049 else spec
        freq = RATE / 2 * np.linspace(0, 1, len(spec))
        for cthr in (0.01, 0.2):
            expected = original(norm, cthr=cthr, unprocessed_array=unprocessed, freq=freq)
            got = roughness_blocks.peaks(util, norm, unprocessed, freq, cthr)
            assert np.array_equal(np.asarray(got[0]), np.asarray(expected[1]))
            assert np.array_equal(np.asarray(got[1]), np.asarray(expected[2]))
            kept += len(got[0])
    assert kept > 100


def test_onset_envelope_is_made_once_per_signal_within_a_track(package, monkeypatch):
    """hardness, depth and warmth ask for the same envelope several times: the same array each
    time (a copy), made once per distinct signal, and the same as outside the track cache."""
    from backends.extractors.timbral import onset_blocks, speedups

    speedups.install(package)
    onset = package.timbral_util.librosa.onset
    calls = []
    real = onset_blocks.onset_strength
    monkeypatch.setattr(onset_blocks, "onset_strength", lambda y, sr: calls.append(1) or real(y, sr))
    x, padded = MATERIAL["bursts"], np.pad(MATERIAL["bursts"], (4097, 0))
    plain = onset.onset_strength(x, RATE), onset.onset_detect(x, RATE, backtrack=True, units="samples")
    with speedups.track_cache():
        calls.clear()
        first = onset.onset_strength(x, RATE)
        first[:] = -1.0  # a caller writing into its envelope changes nobody else's
        again = onset.onset_strength(x, RATE)
        detected = onset.onset_detect(x, RATE, backtrack=True, units="samples")
        onset.onset_strength(padded, RATE)
        onset.onset_detect(padded, RATE, backtrack=True, units="samples")
        assert len(calls) == 2
    assert np.array_equal(again, plain[0]) and np.array_equal(detected, plain[1])


@pytest.mark.parametrize("nperseg, step", [(4096, 128), (512, 32), (2048, 2048)])
@pytest.mark.parametrize("name", ["bursts", "step", "gapped"])
def test_boxcar_magnitudes_are_scipys_spectrogram(name, nperseg, step):
    """hardness's bandwidth spectrogram without scipy's two no-op passes: scipy's numbers."""
    from scipy.signal import spectrogram

    from backends.extractors.timbral import speedups

    x = MATERIAL[name][: RATE // 2]
    for fs in (RATE, 48000):
        f, _, expected = spectrogram(x, fs, window="boxcar", nperseg=nperseg, noverlap=nperseg - step,
                                     scaling="density", mode="magnitude")
        magnitudes = speedups.boxcar_magnitudes(fs, nperseg, nperseg - step)
        got = magnitudes(x)
        assert np.array_equal(magnitudes.freqs, f)
        assert got.shape == expected.T.shape and np.array_equal(got, expected.T)
        assert np.array_equal(np.sum(got.T, axis=0), np.sum(expected, axis=0))


def test_windows_of_a_cached_caller_are_not_kept(package):
    """booming, sharpness and warmth cut the same windows as the first caller: once their
    loudness is known, the track cache holds no reference to their window arrays."""
    from backends.extractors.timbral import speedups

    speedups.install(package)
    util = package.timbral_util
    x = MATERIAL["chords"]
    with speedups.track_cache():
        for _ in range(3):  # three callers, the same windows
            windows = util.window_audio(x)
            for row in windows:
                util.specific_loudness(row, Pref=100.0, fs=RATE, Mod=0)
            assert all(w is windows for w in speedups._pending_windows)
        assert not speedups._pending_windows


def test_rolloff_and_rollon_are_the_packages_loops_at_near_ties():
    """The frame loop of ``get_bandwidth_array``: rolloff = last bin at or above its threshold,
    rollon = first k with the pairwise ``np.sum(seg[:k])`` at or above 5 % of the frame power.
    Thresholds placed one unit in the last place around running and pairwise sums make the
    compiled scan's shortcut and the package's loop disagree wherever the shortcut is wrong."""
    from backends.extractors.timbral.speedups import rolloff_and_rollon

    rng = np.random.default_rng(5)
    rows = np.abs(rng.standard_normal((60, 2049))) * np.exp(-np.arange(2049) / 300)
    rows[3] = 0.0  # a silent frame
    rows[4, 40:] = 0.0  # nothing above the rolloff threshold past bin 39
    rows[5] = 1.0  # integer sums: exact ties
    tpower = np.sum(rows, axis=1)
    thresholds = tpower * 0.05
    for i in range(6, 60):  # ties at a running sum and at a pairwise sum, and a unit either side
        k = int(rng.integers(20, 400))
        base = np.cumsum(rows[i])[k] if i % 2 else np.sum(rows[i, :k + 1])
        thresholds[i] = [np.nextafter(base, 0), base, np.nextafter(base, np.inf)][i % 3]
    rolloff_thresh = 0.05
    rolloff, has_rolloff, rollon = rolloff_and_rollon(rows, tpower, rolloff_thresh, thresholds)
    for i, seg in enumerate(rows):
        above = np.flatnonzero(seg >= rolloff_thresh)
        assert has_rolloff[i] == bool(len(above)) and rolloff[i] == (above[-1] if len(above) else 2048)
        if tpower[i] > 0:
            counter = 1
            while np.sum(seg[:counter]) < thresholds[i]:
                counter += 1
        else:
            counter = 0
        assert rollon[i] == counter, i


@pytest.mark.parametrize("name", sorted(MATERIAL))
def test_rms_envelope_is_the_packages(package, name):
    from backends.extractors.timbral import rms_envelope

    original = _unwrapped(package.timbral_util.calculate_rms_enveope)
    fast = rms_envelope.rms_envelope(package.timbral_util)
    x = MATERIAL[name]
    for step, overlap, normalise in ((1024, 512, False), (256, 256, True), (1000, 333, True)):
        for signal_ in (x, x[:step], x[:step + 1], x[:7]):  # a window exactly, one over, shorter
            assert np.array_equal(fast(signal_.copy(), step, overlap, normalise),
                                  original(signal_.copy(), step, overlap, normalise)), (step, overlap)


def test_window_digests_are_made_once_per_window_and_forgotten_between_functions(package, monkeypatch):
    """Three callers look up the same windows' loudness: each window is hashed once while its
    array lives, the windows cannot be written (the digests stay theirs), and the loudness is
    the package's."""
    from backends.extractors.timbral import speedups

    speedups.install(package)
    util = package.timbral_util
    original = _unwrapped(util.specific_loudness)
    hashed = []
    real = speedups._digest
    monkeypatch.setattr(speedups, "_digest", lambda x: hashed.append(1) or real(x))
    x = MATERIAL["bursts"]
    with speedups.track_cache():
        windows = util.window_audio(x)
        assert not windows.flags.writeable
        got = [util.specific_loudness(row, Pref=100.0, fs=RATE, Mod=0) for row in windows]
        again = [util.specific_loudness(row, Pref=100.0, fs=RATE, Mod=0) for row in windows]
        assert len(hashed) == len(windows)  # the batch's digests, reused by both passes
        speedups.function_done()
        assert not speedups._window_digests
        util.specific_loudness(windows[0], Pref=100.0, fs=RATE, Mod=0)
        assert len(hashed) == len(windows) + 1  # a forgotten array's rows are hashed again
    for row, (entire, single), (entire2, single2) in zip(windows, got, again):
        e_entire, e_single = original(row.copy(), 100.0, RATE, 0)
        assert entire == entire2 == e_entire and np.array_equal(single, e_single)
        assert np.array_equal(single2, e_single)
