"""``scipy.signal.spectrogram`` for loops that read a spectrogram one frame (column) at a time.

brightness and depth each take three spectrograms of the whole track and then walk them
together, column ``idx`` of each per step (``spec[:, idx]``): 950 MB on a 7.5-minute track,
held while depth goes on to its onsets. :func:`spectrogram` returns scipy's frequencies and
times and, for the spectrum, a :class:`ColumnSpectrogram` that makes scipy's spectrogram of one
block of frames when the loop reaches it (backends/extractors/timbral/spectrogram_blocks.py shows a block's columns
are the whole array's, value for value). A column is handed out as a view of its block, as the
package's is a view of the whole array, so what the loop computes from it is unchanged.

Its sum over frames (depth's ``np.sum(spec, axis=1)``) is made block by block in NumPy's order of
additions. Any other use (``np.asarray``, slicing) gets the whole array, made once (in blocks) and
kept: correct everywhere, lean where the package only walks columns or sums over frames.
The samples are read when a block is made: the caller must not change them in between (neither
function does; tests/extractors/timbral/test_timbral.py compares both with the package's own).
"""
from __future__ import annotations

import numbers

import numpy as np

from backends.extractors.timbral import spectrogram_blocks

FRAMES_PER_BLOCK = 1024  # depth: 2049 bins x 1024 frames x 8 bytes = 17 MB per block


class ColumnSpectrogram:
    """The spectrum of ``scipy.signal.spectrogram(x, *args)``, made a block of frames at a time."""

    def __init__(self, x: np.ndarray, args: tuple, n_bins: int, n_frames: int, step: int,
                 nperseg: int):
        self._x, self._args = x, args
        self._step, self._nperseg = step, nperseg
        self.shape = (n_bins, n_frames)
        self.ndim, self.dtype = 2, np.dtype(np.float64)
        self._first = self._block = self._whole = None
        # Sum over frames of the blocks made so far in order from frame 0 (see _sum_over_frames).
        self._total, self._summed = None, 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        column = _column_index(key, self.shape[1])
        if column is None or self._whole is not None:
            return self.whole()[key]
        if self._block is None or not self._first <= column < self._first + self._block.shape[1]:
            from scipy import signal

            first = column - column % FRAMES_PER_BLOCK
            last = min(self.shape[1], first + FRAMES_PER_BLOCK)
            piece = self._x[first * self._step:(last - 1) * self._step + self._nperseg]
            self._set_block(first, signal.spectrogram(piece, *self._args)[2])
        return self._block[:, column - self._first]

    def _set_block(self, first: int, block: np.ndarray) -> None:
        self._first, self._block = first, block
        if first == self._summed:  # the next block in order: its frames join the running sum
            skip = 0
            if self._total is None:
                self._total, skip = block[:, 0].copy(), 1
            if block.dtype == np.float64 and block.ndim == 2:
                from backends.extractors.timbral.kernels import add_columns

                add_columns(self._total, block, skip)  # the loop below, compiled
            else:
                for column in block.T[skip:]:
                    self._total += column
            self._summed = first + block.shape[1]

    def whole(self) -> np.ndarray:
        if self._whole is None:
            self._block = None
            self._whole = spectrogram_blocks.spectrogram(self._x, *self._args)[2]
        return self._whole

    def __array__(self, dtype=None, copy=None):
        whole = self.whole()
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def sum(self, axis=None, dtype=None, out=None, **kwargs):
        if axis in (1, -1) and dtype is None and out is None and not kwargs and self._whole is None:
            return self._sum_over_frames()
        return self.whole().sum(axis=axis, dtype=dtype, out=out, **kwargs)

    def _sum_over_frames(self) -> np.ndarray:
        """``np.sum(spec, axis=1)`` of scipy's array, a block at a time.

        scipy's array keeps each frame's bins together; NumPy reduces it over frames by adding one
        frame after another into the running sums, in frame order. The same additions, in the
        same order, need one block at a time (depth: 318 MB fewer on a 7.5-minute track).
        The loops have usually walked every block in order already, adding as they went.
        """
        while self._summed < self.shape[1]:
            self[:, self._summed]  # makes the next block, which adds itself
        return self._total.copy()


def _column_index(key, n_frames: int):
    """``idx`` for a key ``(:, idx)`` with an integer ``idx`` in range; None for any other key."""
    if (not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[0], slice)
            or key[0] != slice(None)
            or isinstance(key[1], bool) or not isinstance(key[1], numbers.Integral)):
        return None
    column = int(key[1])
    if column < 0:
        column += n_frames
    return column if 0 <= column < n_frames else None


def spectrogram(x, fs=1.0, window=('tukey', .25), nperseg=None, noverlap=None, nfft=None,
                detrend='constant', return_onesided=True, scaling='density', axis=-1, mode='psd'):
    """scipy's ``(f, t, Sxx)``; ``Sxx`` a :class:`ColumnSpectrogram` for long 1-D float64 input."""
    from scipy import signal

    args = (fs, window, nperseg, noverlap, nfft, detrend, return_onesided, scaling, axis, mode)
    x = np.asarray(x)
    if (not spectrogram_blocks.blockable(x, nperseg, noverlap)
            or mode not in ('psd', 'magnitude', 'spectrum') or not return_onesided):
        return signal.spectrogram(x, *args)
    step = nperseg - noverlap
    n_frames = (len(x) - nperseg) // step + 1
    if n_frames <= FRAMES_PER_BLOCK:
        return signal.spectrogram(x, *args)
    # The first block answers what the whole call would: frequencies, bins, the type.
    f, _, first = signal.spectrogram(x[:(FRAMES_PER_BLOCK - 1) * step + nperseg], *args)
    if first.dtype != np.float64:
        return spectrogram_blocks.spectrogram(x, *args)
    t = np.arange(nperseg / 2, len(x) - nperseg / 2 + 1, step) / float(fs)
    spec = ColumnSpectrogram(x, args, first.shape[0], n_frames, step, nperseg)
    spec._set_block(0, first)  # the loops start there
    return f, t, spec
