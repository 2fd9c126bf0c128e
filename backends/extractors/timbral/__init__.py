"""Audio Commons timbral models (brightness, roughness, hardness, depth, booming, reverberation,
sharpness, warmth) of the full mix.

The package (``timbral_models`` 0.4.0) is run unchanged through a compatibility layer
(``backends/extractors/timbral/compat.py``) and value-preserving accelerations
(``backends/extractors/timbral/speedups.py``); the mix is decoded once by the engine and handed to all
eight functions as an array instead of each function reading the file again.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(
    name="timbral",
    version="1",
    description="Audio Commons timbral models: brightness, roughness, hardness, depth, booming, "
                "reverberation, sharpness, warmth",
    keys=("brightness", "roughness", "hardness", "depth", "booming", "reverberation",
          "sharpness", "warmth"),
    # The file's own rate, as the package reads it (it upsamples below 44.1 kHz itself).
    audio=(AudioNeed("mix", None),),
    # The package can loop forever on pathological audio; the engine kills the worker after this.
    timeout_s=900,
    # It is nearly all of a track's CPU time, so it gets a worker per job like any CPU module, as
    # many as fit the memory (its measured peak on a 7.5-minute track: docs/performance.md).
    worker_memory_gb=2.0,
)

# The package's loudness normalisation needs 0.4 s; its attack-time and onset steps need a few
# onsets' worth of audio to say anything.
MIN_SECONDS = 1.0
FUNCTIONS = ("brightness", "roughness", "hardness", "depth", "booming", "sharpness", "warmth")


class Timbral(Extractor):
    def __init__(self):
        super().__init__(device="cpu", model_provenance={
            "library": "timbral_models 0.4.0 (Audio Commons), clip_output=False"})
        from backends.extractors.timbral import compat as timbral_compat
        from backends.extractors.timbral import speedups as timbral_speedups

        self._package = timbral_compat.load()
        timbral_speedups.install(self._package)
        # Compiled loops from numba's on-disk cache (compiled and written once, before this
        # worker says hello, so the module's further workers only read it).
        from backends.extractors.timbral import kernels as timbral_kernels

        timbral_kernels.warm()
        _warm_librosa_jit()
        self._speedups = timbral_speedups
        from backends import heap_reuse

        heap_reuse.keep_freed_memory()

    def process(self, track: Track) -> Result:
        from backends import heap_reuse

        try:
            return self._features(track)
        finally:
            # What the track freed stays for the next one, up to the memory planned per worker.
            heap_reuse.give_back(above_bytes=int(SPEC.worker_memory_gb * 2**30))

    def _features(self, track: Track) -> Result:
        import numpy as np

        from backends.protocol import BadInput

        data, rate = track.audio("mix")
        path = track.mix.path
        if len(data) < MIN_SECONDS * rate:
            raise BadInput(f"{path}: {len(data) / rate:.2f} s of audio is too short for the timbral "
                           f"models (needs at least {MIN_SECONDS:g} s)")
        if not np.any(data):
            raise BadInput(f"{path}: the audio is all zeros (digital silence): it has no timbre")
        features = {}
        with self._speedups.track_cache():
            # The seven functions start by summing the channels (file_read, mono_sum=True); they get
            # that sum already made, in float64 as the package reads, so no stereo float64 copy of
            # the track sits beside everything they allocate (318 MB on 7.5 minutes).
            audio = self._speedups.mono_float64(data, self._package.timbral_util)
            del data  # the map's pages are freed with it; reverb maps the file again
            for i, name in enumerate(FUNCTIONS):
                track.progress(i / 8, name)
                function = getattr(self._package, f"timbral_{name}")
                # The same array each time: the shared read hands each function its own copy of
                # the normalised samples (timbral_speedups).
                features[name] = float(self._call(function, audio, rate, path))
                self._speedups.function_done()
            del audio
        # Reverb reads each channel as it is (no mono sum, no normalisation): float64 like the
        # package's own soundfile.read, 1-D for mono as always_2d=False gives; made only now,
        # when the other functions' arrays and caches are gone.
        track.progress(7 / 8, "reverberation")
        data, rate = track.audio("mix")
        audio = np.array(data[:, 0] if data.shape[1] == 1 else data, dtype=np.float64)
        del data
        _, probability = self._call(self._package.timbral_reverb, audio, rate, path,
                                    dev_output=True)
        # The model's probability that the audio sounds reverberant, as a percentage; the package's
        # own answer is that probability rounded to 0 or 1.
        features["reverberation"] = float(probability) * 100.0
        for name, value in features.items():
            if not np.isfinite(value):
                raise BadInput(f"{path}: the timbral model {name} gave {value} for this audio")
        return Result(features)

    @staticmethod
    def _call(function, audio, rate, path, **kwargs):
        from backends.protocol import BadInput

        try:
            return function(audio, fs=rate, **kwargs)
        except ValueError as exc:  # the package's way of refusing input (silence, empty)
            raise BadInput(f"{path}: {function.__name__} cannot analyse it ({exc})") from exc


def _warm_librosa_jit() -> None:
    """librosa's own numba functions (onset peak picking) load from their cache on first use:
    half a CPU second in a worker's first track otherwise, here before the worker's hello."""
    import librosa
    import numpy as np

    pulses = np.zeros(22050)
    pulses[::2205] = 1.0
    librosa.onset.onset_detect(y=pulses, sr=22050)


def create() -> Timbral:
    return Timbral()
