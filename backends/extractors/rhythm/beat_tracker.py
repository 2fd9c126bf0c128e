"""essentia's multi-feature beat tracker with its five onset detection functions computed from one
shared spectrogram.

essentia's ``BeatTrackerMultiFeature`` (Zapata, Davies and Gómez 2014; what
``RhythmExtractor2013(method="multifeature")`` runs) computes five onset detection functions
(ODFs), has ``TempoTapDegara`` track beats in each, and lets ``TempoTapMaxAgreement`` pick the
candidate the others agree with most; that agreement is its confidence. It spends most of its time
framing and transforming the same audio three times over
(the 2048/1024 chain and, separately, the beat emphasis and the information gain functions on
2048/512 frames) and walking every bin of every frame one at a time.

Here the five functions come from one 2048/512 Hann spectrogram (the 2048/1024 frames are its
even frames), a block of frames at a time, with each function's arithmetic vectorised over frames
and bins, as essentia defines it (its source: OnsetDetection "complex", "rms", "melflux";
OnsetDetectionGlobal "beat_emphasis", "infogain"). The mel and ERB filter banks are read out of
essentia's own MelBands and ERBBands, and essentia's ``TempoTapDegara`` tracks the beats in each
function. The agreement step is ``TempoTapMaxAgreement``'s arithmetic in NumPy (see
:func:`max_agreement` for why not essentia's own). tests/extractors/rhythm/test_beat_tracker.py compares each
function with essentia's own and the beats, tempo and confidence with ``RhythmExtractor2013``.

The one deliberate difference: essentia's streaming frame cutter adds -100 dB noise to digitally
silent 2048/1024 frames, which makes its mel-flux function a few dB of noise there; here silent
frames stay silent (zero detection), as in essentia's standard-mode frame cutter.
"""
from __future__ import annotations

import functools

import numpy as np

RATE = 44100  # the tracker's filter banks and tempo model assume it
FRAME = 2048
HOP = 512
BINS = FRAME // 2 + 1
FRAMES_PER_BLOCK = 2048  # 2048 x 1025 complex64 spectra: 17 MB per block
# Information gain: +/- 5 frames histogrammed around each frame, 40 Hz - 5 kHz.
INFOGAIN_HALF = 5
INFOGAIN_BINS = (round(40.0 * FRAME / RATE), round(5000.0 * FRAME / RATE) + 1)
# Beat emphasis: 40 ERB bands from 80 Hz, an adaptive mean over 8 + 8 + 1 ODF samples, periods up
# to ~6 s weighted by a Rayleigh tempo preference peaking at 43 ODF samples, 4 combs.
ERB_BANDS = 40
SMOOTH_HALF = 8
MAX_PERIOD = int(round(5.944308390022676 * RATE / HOP))
COMBS = 4
TOP_BAND_SHARE = 0.6
# Agreement: beat-error histograms of 40 bins, ignoring the first 5 s where the trackers settle.
ABSOLUTE_BINS = 40
MIN_TICK_TIME = 5.0
# essentia documents the most confidence as log2(40) = 5.32, but takes log2 of the integer bin
# count in integer arithmetic: 5, which its trackers report for perfect agreement.
MAX_GAIN = int(np.log2(ABSOLUTE_BINS))


@functools.lru_cache(maxsize=1)
def _filter_banks():
    """essentia's symmetric Hann window (normalised to sum 2) and its mel and ERB weights, read
    from essentia's own algorithms: both banks are linear (mel in power, ERB in magnitude)."""
    import essentia.standard as es

    window = es.Windowing(type="hann", size=FRAME, zeroPhase=False)(np.ones(FRAME, np.float32))
    mel = es.MelBands(sampleRate=RATE, numberBands=40, lowFrequencyBound=0.0,
                      highFrequencyBound=4000.0)
    erb = es.ERBBands(inputSize=BINS, numberBands=ERB_BANDS, lowFrequencyBound=80.0,
                      highFrequencyBound=RATE / 2, type="magnitude")
    unit = np.zeros(BINS, np.float32)
    mel_weights = np.empty((BINS, 40), np.float32)
    erb_weights = np.empty((BINS, ERB_BANDS), np.float32)
    for k in range(BINS):
        unit[k] = 1.0
        mel_weights[k] = mel(unit)
        erb_weights[k] = erb(unit)
        unit[k] = 0.0
    # essentia's Windowing rotates the frame by half its length (zero phase) before the FFT:
    # for an even length that multiplies bin k by (-1)^k.
    rotation = np.where(np.arange(BINS) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return np.asarray(window, np.float32), mel_weights, erb_weights, rotation


def frame_count(samples: int, hop: int) -> int:
    """Frames essentia's frame cutter gives with ``startFromZero``: up to and including the first
    frame that reaches the end (zero-padded)."""
    if samples <= 0:
        return 0
    return 1 + max(0, -(-(samples - FRAME) // hop))


class _Spectra:
    """The 2048/512 Hann spectrogram of a signal, a block of frames at a time. Each block starts
    on an even frame and is led by the four frames before it (zeros before the start): the phase
    predictions look two frames back at hop 512 and two 2048/1024 frames (four rows) back."""

    LEAD = 4

    def __init__(self, signal: np.ndarray):
        self.signal = signal
        self.fine = frame_count(len(signal), HOP)
        self.coarse = frame_count(len(signal), 2 * HOP)
        # The 2048/1024 cutter can take one frame more than every second 2048/512 frame: its last
        # frame starts before the end but the 2048/512 cutter stopped a frame earlier.
        self.frames = max(self.fine, 2 * self.coarse - 1)
        self.window, _, _, self.rotation = _filter_banks()

    def blocks(self):
        import scipy.fft

        for first in range(0, self.frames, FRAMES_PER_BLOCK):
            last = min(self.frames, first + FRAMES_PER_BLOCK)
            lead = min(first, self.LEAD)
            start, end = (first - lead) * HOP, (last - 1) * HOP + FRAME
            piece = self.signal[start:end]
            if len(piece) < end - start:  # the last frame reaches past the end: zero-padded
                piece = np.concatenate([piece, np.zeros(end - start - len(piece), np.float32)])
            framed = np.lib.stride_tricks.sliding_window_view(piece, FRAME)[::HOP]
            spectrum = scipy.fft.rfft(framed * self.window, axis=1) * self.rotation
            magnitude = np.abs(spectrum)
            phase = np.angle(spectrum)
            if lead < self.LEAD:  # before the first frame essentia's previous spectra are zeros
                zeros = np.zeros((self.LEAD - lead, BINS), np.float32)
                magnitude, phase = np.vstack([zeros, magnitude]), np.vstack([zeros, phase])
            yield first, last, magnitude, phase


def _complex_difference(magnitude, phase, sign, squared):
    """Rows 2.. of a block: each bin's distance from its prediction out of the two rows before:
    the previous row's magnitude at the phase 2 p1 + sign * p2 (essentia's "complex" function
    subtracts the older phase, as the method's authors do; its beat emphasis function adds it)."""
    # essentia wraps the predicted phase into [-pi, 3pi) first (fmod in double precision, a third
    # of this function's time here); only its cosine and sine are used, so it is left unwrapped.
    delta = phase[2:] - (2.0 * phase[1:-1] + sign * phase[:-2])
    current = magnitude[2:]
    real = magnitude[1:-1] - current * np.cos(delta)
    imag = current * np.sin(delta)
    power = real * real + imag * imag
    return power if squared else np.sqrt(power)


def _amp2db(values: np.ndarray) -> np.ndarray:
    # essentia's amp2db: 2 * lin2db, with lin2db = -100 dB below 1e-10.
    safe = np.maximum(values, np.float32(1e-10))
    return np.where(values < 1e-10, np.float32(-200.0), 20.0 * np.log10(safe)).astype(np.float32)


def onset_functions(signal: np.ndarray) -> dict[str, np.ndarray]:
    """The five detection functions of a 44.1 kHz mono float32 signal: ``complex``, ``rms`` and
    ``melflux`` at 2048/1024 (one value per even 2048/512 frame), ``beat_emphasis`` and
    ``infogain`` at 2048/512."""
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    spectra = _Spectra(signal)
    _, mel_weights, erb_weights, _ = _filter_banks()
    lo, hi = INFOGAIN_BINS
    fine_frames, coarse_frames = spectra.fine, spectra.coarse
    erb_odf = np.empty((spectra.frames, ERB_BANDS), np.float32)
    infogain_bins = np.empty((spectra.frames, hi - lo), np.float32)
    complex_odf = np.empty(coarse_frames, np.float32)
    rms = np.empty(coarse_frames, np.float32)
    mel_db = np.empty((coarse_frames, 40), np.float32)
    for first, last, magnitude, phase in spectra.blocks():
        lead = _Spectra.LEAD
        erb_odf[first:last] = _complex_difference(magnitude[lead - 2:], phase[lead - 2:], +1.0,
                                                  squared=True) @ erb_weights
        infogain_bins[first:last] = magnitude[lead:, lo:hi]
        # Rows 0, 2, 4, ... are the 2048/1024 frames first - 4, first - 2, first, ...
        coarse_magnitude, coarse_phase = magnitude[::2], phase[::2]
        rows = slice(first // 2, first // 2 + len(coarse_magnitude) - 2)
        complex_odf[rows] = _complex_difference(coarse_magnitude, coarse_phase, -1.0,
                                                squared=False).sum(axis=1)
        power = coarse_magnitude[2:] ** 2
        rms[rows] = np.sqrt(power.sum(axis=1)) / BINS
        mel_db[rows] = _amp2db(power @ mel_weights)
    # Both are differences from the frame before, half-rectified; essentia zeroes the first.
    rms_odf = np.maximum(np.diff(rms, prepend=rms[:1]), 0.0).astype(np.float32)
    melflux_odf = np.zeros(coarse_frames, np.float32)
    melflux_odf[1:] = np.maximum(np.diff(mel_db, axis=0), 0.0).sum(axis=1)
    return {"complex": complex_odf, "rms": rms_odf, "melflux": melflux_odf,
            "beat_emphasis": beat_emphasis(erb_odf[:fine_frames]),
            "infogain": information_gain(infogain_bins[:fine_frames])}


def information_gain(magnitude: np.ndarray) -> np.ndarray:
    """OnsetDetectionGlobal "infogain": for each new frame, the positive log2 ratios of the bins'
    weighted sums over the five frames before the frame five back and the five after it (the
    function lags five frames, as essentia's does)."""
    frames, bins = magnitude.shape
    weights = np.array([1 - i * np.float32(0.9) / INFOGAIN_HALF for i in range(INFOGAIN_HALF)],
                       np.float32)  # 1, .82, .64, .46, .28
    span = 2 * INFOGAIN_HALF + 1
    padded = np.vstack([np.zeros((span - 1, bins), np.float32), magnitude])
    old = np.zeros((frames, bins), np.float32)
    new = np.zeros((frames, bins), np.float32)
    for i in range(INFOGAIN_HALF):
        # The newest frame is row j + span - 1 of the padded array.
        old += padded[i:i + frames] * weights[INFOGAIN_HALF - 1 - i]
        new += padded[INFOGAIN_HALF + 1 + i:INFOGAIN_HALF + 1 + i + frames] * weights[i]
    old[old == 0] = 1.0
    new[new == 0] = np.finfo(np.float32).eps
    return np.maximum(np.log2(new / old), 0.0).sum(axis=1).astype(np.float32)


def beat_emphasis(band_odf: np.ndarray) -> np.ndarray:
    """OnsetDetectionGlobal "beat_emphasis" from the complex spectral differences summed into ERB
    bands (frames x bands): each band scaled to unit deviation, its adaptive mean removed, its
    periodicity rated by a comb over its autocorrelation; the bands rated highest are summed
    with those ratings as weights."""
    frames = len(band_odf)
    if frames == 0:
        return np.zeros(0, np.float32)
    bands = band_odf.T.astype(np.float32)  # bands x frames
    deviation = bands.std(axis=1, dtype=np.float64).astype(np.float32)
    bands = np.where(deviation[:, None] > 0, bands / np.where(deviation > 0, deviation, 1)[:, None],
                     bands)
    # essentia appends 2 x 8 copies of the last value, runs a causal 17-point moving average and
    # drops its first 16 outputs: frame i loses the mean of frames i .. i + 16.
    extended = np.concatenate([bands, np.repeat(bands[:, -1:], 2 * SMOOTH_HALF, axis=1)], axis=1)
    width = 2 * SMOOTH_HALF + 1
    cumulative = np.cumsum(extended, axis=1, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((len(bands), 1)), cumulative], axis=1)
    smoothed = ((cumulative[:, width:width + frames] - cumulative[:, :frames]) / width)
    extended[:, :frames] = np.maximum(extended[:, :frames] - smoothed.astype(np.float32), 0.0)
    acf = _unbiased_autocorrelation(extended)[:, :MAX_PERIOD]
    if acf.shape[1] < MAX_PERIOD:
        # Under ~6 s of audio the lags the combs read run past the signal: nothing correlates there.
        acf = np.pad(acf, ((0, 0), (0, MAX_PERIOD - acf.shape[1])))
    tau = np.arange(1, MAX_PERIOD + 1, dtype=np.float64)
    rayleigh = round(43 * 512.0 / MAX_PERIOD) ** 2
    preference = (tau / rayleigh * np.exp(-0.5 * tau * tau / rayleigh)).astype(np.float32)
    period_max = (MAX_PERIOD - (COMBS - 1)) // COMBS - 1
    periods = np.arange(3, period_max)
    weighted = np.zeros((len(bands), MAX_PERIOD), np.float32)
    for comb in range(1, COMBS + 1):
        spread = 2 * comb - 1
        for region in range(1 - comb, comb):
            weighted[:, periods] += preference[periods] * acf[:, periods * comb + region] / spread
    ratings = weighted.max(axis=1)
    ratings = ratings / ratings.max() if ratings.max() > 0 else ratings
    threshold = _band_threshold(ratings)
    chosen = ratings >= threshold
    return (extended[chosen, :frames] * ratings[chosen, None]).sum(axis=0).astype(np.float32)


def _band_threshold(ratings: np.ndarray) -> float:
    # essentia means the 60th percentile of the ratings ("take the top 40 %"), but copies them
    # into a vector it has only reserved, so its sort sees nothing and it reads the 25th band's
    # own rating: that is what the tracker computes, so that is what is computed here.
    return float(ratings[int(np.floor(len(ratings) * TOP_BAND_SHARE))])


def _unbiased_autocorrelation(rows: np.ndarray) -> np.ndarray:
    """essentia's AutoCorrelation(normalization="unbiased") of each row, through the FFT."""
    size = rows.shape[1]
    fft_size = 1 << int(np.ceil(np.log2(2 * size)))
    spectrum = np.fft.rfft(rows, n=fft_size, axis=1)
    correlation = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=fft_size, axis=1)[:, :size]
    return (correlation / (size - np.arange(size))).astype(np.float32)


def _agreement_bin_borders() -> np.ndarray:
    """TempoTapMaxAgreement's histogram borders, built as essentia builds them (in float32, a
    centre at each end and 37 between, then the midpoints)."""
    bins = ABSOLUTE_BINS
    delta = np.float32(1.0 / (bins - 1))
    centres = [np.float32(-0.5)]
    centre = np.float32(-0.5 + 1.5 * float(delta))
    while float(centre) <= 0.5 - 1.5 * float(delta):
        centres.append(centre)
        centre = np.float32(centre + delta)
    centres.append(np.float32(0.5))
    centres = np.array(centres, np.float32)
    return ((centres[:-1] + centres[1:]) / np.float32(2)).astype(np.float32)


def _beat_errors(reference: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Each tick's distance from the nearest reference beat, as a share of the beat interval on
    its side (essentia's FindBeatError; ties go to the earlier beat)."""
    right = np.clip(np.searchsorted(reference, ticks), 1, len(reference) - 1)
    left = right - 1
    nearest = np.where(np.abs(reference[right] - ticks) < np.abs(reference[left] - ticks),
                       right, left)
    error = ticks - reference[nearest]
    before = np.clip(nearest - 1, 0, None)
    after = np.clip(nearest + 1, None, len(reference) - 1)
    backward = 0.5 * (reference[nearest] - reference[before])
    forward = 0.5 * (reference[after] - reference[nearest])
    last = len(reference) - 1
    interval = np.where(nearest == 0, forward,
                        np.where(nearest == last, backward, np.where(error < 0, backward, forward)))
    return (0.5 * error / interval).astype(np.float32)


def _entropy(errors: np.ndarray, borders: np.ndarray) -> np.float32:
    wrapped = (np.fmod(errors + np.float32(0.5), np.float32(1.0)) - np.float32(0.5)).astype(np.float32)
    counts = np.bincount(np.searchsorted(borders, wrapped, side="right"),
                         minlength=len(borders) + 1).astype(np.float32)
    counts[0] += counts[-1]  # the last bin wraps round to the first
    shares = counts[:-1] / counts[:-1].sum()
    shares = shares[shares > 0]
    return np.float32(-(np.log2(shares) * shares).sum())


def max_agreement(candidates: list[np.ndarray], *, settle_s: float = MIN_TICK_TIME) -> tuple[np.ndarray, float]:
    """TempoTapMaxAgreement: the candidate whose beats agree best with the others' (mean
    information gain of the beat-error histograms, 40 bins) and the mean of all candidates'
    agreement as the confidence (0-5).

    Not essentia's own algorithm called from Python: its configure() appends to its histogram
    borders instead of replacing them, and Python's wrapper configures a new algorithm twice, so
    its confidence is not the one BeatTrackerMultiFeature (whose instance is configured once)
    reports for the same candidates."""
    borders = _agreement_bin_borders()
    trimmed = [np.asarray(c, np.float32)[np.asarray(c) >= settle_s] for c in candidates]
    count = len(trimmed)
    gain = np.zeros((count, count), np.float32)
    for i in range(count):
        for j in range(i + 1, count):
            a, b = trimmed[i], trimmed[j]
            if len(a) < 2 or len(b) < 2:
                continue
            worst = max(_entropy(_beat_errors(a, b), borders), _entropy(_beat_errors(b, a), borders))
            gain[i, j] = gain[j, i] = np.float32(MAX_GAIN) - worst
    per_method = gain.sum(axis=1) / np.float32(max(count - 1, 1))
    chosen = int(np.argmax(per_method))
    return np.asarray(candidates[chosen], np.float64), float(per_method.mean())


class MultiFeatureBeatTracker:
    """Beat times (s) and essentia's agreement confidence (0-5) of a 44.1 kHz mono signal."""

    def __init__(self, min_tempo: int = 40, max_tempo: int = 208):
        self.min_tempo, self.max_tempo = min_tempo, max_tempo
        _filter_banks()

    def __call__(self, signal: np.ndarray) -> tuple[np.ndarray, float]:
        return max_agreement(self.candidates(signal))

    def candidates(self, signal: np.ndarray) -> list[np.ndarray]:
        """The five trackers' beats, one per detection function, before the agreement step."""
        import essentia.standard as es

        functions = onset_functions(signal)
        candidates = []
        for name in ("complex", "rms", "melflux", "beat_emphasis", "infogain"):
            coarse = name in ("complex", "rms", "melflux")
            # Fresh instances: essentia's standard algorithms keep state between calls.
            degara = es.TempoTapDegara(sampleRateODF=RATE / (2 * HOP if coarse else HOP),
                                       resample="x2" if coarse else "none",
                                       minTempo=self.min_tempo, maxTempo=self.max_tempo)
            candidates.append(np.asarray(degara(functions[name]), np.float32))
        return candidates


PERIOD_TOLERANCE_BPM = 5.0


def tempo(ticks: np.ndarray) -> float:
    """RhythmExtractor2013's tempo from the beats (BPM; 0 with fewer than two): the mean of the
    beat-to-beat tempi within 5 BPM of the most common 2-BPM-wide bin (the lowest, when several are)."""
    if len(ticks) < 2:
        return 0.0
    estimates = (np.float32(60.0) / np.diff(np.asarray(ticks, np.float32))).astype(np.float32)
    halves = np.maximum(estimates / np.float32(2.0), 0) + np.float32(0.5)  # rounded to bins
    closest = float(np.argmax(np.bincount(halves.astype(np.int64))) * 2)
    near = estimates[np.abs(closest - estimates) < PERIOD_TOLERANCE_BPM]
    return float(near.mean(dtype=np.float32)) if len(near) else closest
