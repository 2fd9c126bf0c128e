"""The fast channel average gives exactly what NumPy's float32 mean gives, for every layout
mirdeck decodes (mono to 7.1 and beyond)."""
from __future__ import annotations

import numpy as np
import pytest

from backends.audio import to_mono


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8, 10])
def test_to_mono_is_bit_identical_to_numpys_mean(channels):
    rng = np.random.default_rng(channels)
    # Values of very different magnitudes make the order of additions visible in float32.
    data = (rng.standard_normal((20000, channels)) * 10.0 ** rng.integers(-6, 2, (20000, channels)))
    data = data.astype(np.float32)
    got = to_mono(data)
    assert got.dtype == np.float32 and got.shape == (20000,)
    np.testing.assert_array_equal(got, data.mean(axis=1, dtype=np.float32))


def test_to_mono_leaves_a_read_only_map_alone(tmp_path):
    path = tmp_path / "pcm.npy"
    np.save(path, np.ones((100, 2), np.float32))
    mapped = np.load(path, mmap_mode="r")
    assert np.all(to_mono(mapped) == 1.0)
