"""Stand-in Demucs checkpoints: the real ``HTDemucs`` class, a small configuration, random weights,
saved in the package's own checkpoint format under the package's own naming rule, so that they load
through exactly the code path real weights take (``demucs.repo.LocalRepo`` + ``BagOnlyRepo``).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

SOURCES = ["drums", "bass", "other", "vocals"]
# What makes a checkpoint a stand-in to mirdeck (backends/extractors/stems/checkpoint.py).
MARKER = {"mirdeck_stand_in": True}
# htdemucs' segment (39/5 s) and depth (the transformer needs the four layers to shrink the frequency axis);
# 4 channels at the top, 1 transformer layer of 32 dimensions.
SMALL = dict(channels=4, depth=4, t_layers=1, t_heads=2, dconv_comp=2, segment=Fraction(39, 5),
             bottom_channels=0, dconv_mode=3)


def build(seed: int = 0, **config):
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    model = HTDemucs(sources=list(SOURCES), **{**SMALL, **config})
    return model.eval()


def save(model, folder: Path, sig: str, *, marked: bool = True) -> Path:
    """``<folder>/<sig>-<sha256[:8]>.th`` as ``demucs.states.save_with_checksum`` names it: the
    ``serialize_model`` dictionary (class, arguments, half-precision state, training arguments)."""
    import hashlib
    import io

    import torch
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    package = {"klass": model.__class__, "args": args, "kwargs": kwargs,
               "state": get_state(model, None, half=True), "training_args": dict(MARKER) if marked else {}}
    buffer = io.BytesIO()
    torch.save(package, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()[:8]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sig}-{digest}.th"
    path.write_bytes(buffer.getvalue())
    return path


def install(weights: Path, name: str = "htdemucs", seed: int = 0, **config) -> list[Path]:
    """Stand-ins for every checkpoint of ``name`` in ``<weights>/demucs``."""
    from backends.extractors.stems import checkpoint

    return [save(build(seed + i, **config), weights / checkpoint.FOLDER, sig)
            for i, sig in enumerate(checkpoint.signatures(name))]


class ScaledCopies:
    """A model whose answer is known: every stem is the input times a fixed gain.

    Defined lazily (torch is imported inside) so that importing this module stays cheap. Saved in
    Demucs' checkpoint format, it loads through the same ``LocalRepo`` path as HTDemucs, so a test can
    check every step around the network — normalisation, segments, cross-fades, shifts, resampling,
    channels, FLAC — against ``gain × mix``.
    """

    GAINS = (0.1, 0.2, 0.3, 0.4)


def scaled_copies_class():
    import torch
    from demucs.states import capture_init

    class ScaledCopiesModel(torch.nn.Module):
        @capture_init
        def __init__(self, sources=tuple(SOURCES), gains=ScaledCopies.GAINS, samplerate=44100,
                     segment=Fraction(39, 5), audio_channels=2):
            super().__init__()
            self.sources = list(sources)
            self.samplerate = samplerate
            self.segment = segment
            self.audio_channels = audio_channels
            self.gains = torch.nn.Parameter(torch.tensor(gains, dtype=torch.float32))

        def forward(self, mix):  # [batch, channels, frames] -> [batch, sources, channels, frames]
            return mix[:, None] * self.gains[None, :, None, None]

    ScaledCopiesModel.__module__ = __name__
    ScaledCopiesModel.__qualname__ = "ScaledCopiesModel"
    return ScaledCopiesModel


def __getattr__(name):  # lets torch.load find the class by its module path without importing torch here
    if name == "ScaledCopiesModel":
        cls = scaled_copies_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def install_scaled_copies(weights: Path, name: str = "htdemucs", gain: float | None = None) -> list[Path]:
    """Known-answer checkpoints for every signature of ``name``. In a bag (``htdemucs_ft``: one
    model per stem, weighted 1 for its stem and 0 for the others) model k answers GAINS[k] for every
    stem, so the bag's stem k is still GAINS[k] x mix only if the weights pick the right model.
    With ``gain``, every stem of every model is ``gain`` x mix (a model that answers differently)."""
    from backends.extractors.stems import checkpoint

    sigs = checkpoint.signatures(name)
    cls = __getattr__("ScaledCopiesModel")
    if gain is not None:
        return [save(cls(gains=(gain,) * 4), weights / checkpoint.FOLDER, sig) for sig in sigs]
    if len(sigs) == 1:
        return [save(cls(), weights / checkpoint.FOLDER, sigs[0])]
    return [save(cls(gains=(gain,) * 4), weights / checkpoint.FOLDER, sig)
            for sig, gain in zip(sigs, ScaledCopies.GAINS)]
