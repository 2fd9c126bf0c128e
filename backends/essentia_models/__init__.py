"""Essentia-TensorFlow models: their metadata, per-run settings, label mapping and graph loading.

Used by ``backends.extractors.essentia_tf``. ``catalogue`` and ``labels`` need only the standard
library and numpy; ``graphs`` imports essentia, and only inside its functions.
"""
