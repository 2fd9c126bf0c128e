"""Lets Audio Commons ``timbral_models`` 0.4.0 (2019) run on NumPy 2 and current librosa.

The package is installed unchanged (``pip install --no-deps timbral_models==0.4.0``, see
bin/setup); this module adapts the world around it instead of copying its code:

* NumPy 2 removed the alias ``np.lib.pad``; the package pads with it in hardness and roughness.
  We add the alias back (only when it is missing; it always meant ``np.pad``).
* librosa >= 0.10 made the signal and rate keyword-only (``onset_strength(y=..., sr=...)``,
  ``resample(y, orig_sr=..., target_sr=...)``), while the package passes them positionally.
  The package's modules reach librosa through their module-level name ``librosa``; we point that
  name, in those modules only, at a thin proxy that turns the old positional calls into keyword
  calls. librosa itself is not modified for anyone else in the process.

Call :func:`load` instead of importing ``timbral_models`` directly. Heavy imports happen inside.
"""
from __future__ import annotations

import types

# Modules of the package that use the name ``librosa`` at call time.
_LIBROSA_USERS = ("timbral_models.timbral_util", "timbral_models.Timbral_Hardness")


def _positional_librosa():
    """A stand-in for the ``librosa`` module accepting librosa < 0.10's positional arguments."""
    import librosa

    def onset_strength(y=None, sr=22050, **kwargs):
        return librosa.onset.onset_strength(y=y, sr=sr, **kwargs)

    def onset_detect(y=None, sr=22050, **kwargs):
        return librosa.onset.onset_detect(y=y, sr=sr, **kwargs)

    def resample(y, orig_sr, target_sr, **kwargs):
        return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, **kwargs)

    onset = types.SimpleNamespace(onset_strength=onset_strength, onset_detect=onset_detect)
    core = types.SimpleNamespace(stft=librosa.stft, istft=librosa.istft, resample=resample)
    return types.SimpleNamespace(onset=onset, core=core, decompose=librosa.decompose,
                                 __version__=librosa.__version__)


def load():
    """Import ``timbral_models`` made compatible; returns the package module."""
    import importlib
    import sys

    import numpy as np

    if not hasattr(np.lib, "pad"):
        np.lib.pad = np.pad
    package = importlib.import_module("timbral_models")
    proxy = _positional_librosa()
    for name in _LIBROSA_USERS:
        sys.modules[name].librosa = proxy
    return package
