"""Augmentation of training clips, identical for every frame of a clip.

Geometry (flips, 90 degree turns, affine warps, elastic deformation) moves
image and labels together; labels are resampled by nearest neighbour so ids
and the -1 "unannotated" value survive unchanged, and pixels brought in from
outside the clip are -1. Intensity changes touch the image only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: probabilities of the optional transforms
AFFINE_P = 0.5
ELASTIC_P = 0.3
BLUR_P = 0.3
#: elastic deformation: control points per side and the std of their shifts (pixels);
#: the smoothing shrinks the shifts to about 2.4 pixels per pixel
ELASTIC_GRID = 4
ELASTIC_SHIFT = 6.0


class Augmenter:
    """Random transforms of a clip, drawn from ``rng``.

    ``augmenter(image, labels)`` with image ``(T, C, Y, X)`` float32 and labels
    ``(T, Y, X)`` integers returns the transformed pair with the same shapes
    and dtypes (90 degree turns only when ``Y == X``).
    """

    def __init__(self, rng: np.random.Generator, flips: bool = True, rot90: bool = True,
                 affine: bool = True, elastic: bool = True, intensity: bool = True):
        self.rng = rng
        self.flips, self.rot90, self.affine = flips, rot90, affine
        self.elastic, self.intensity = elastic, intensity

    @property
    def warps(self) -> bool:
        """Whether pixels may come from outside the clip (callers may crop with a margin)."""
        return self.affine or self.elastic

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image, labels = self._turn(image, labels)
        image, labels = self._warp(image, labels)
        if self.intensity:
            image = self._intensity(image)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels)

    def _turn(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.flips:
            for axis in (-2, -1):
                if self.rng.random() < 0.5:
                    image, labels = np.flip(image, axis), np.flip(labels, axis)
        if self.rot90 and image.shape[-1] == image.shape[-2]:
            k = int(self.rng.integers(4))
            image, labels = np.rot90(image, k, (-2, -1)), np.rot90(labels, k, (-2, -1))
        return image, labels

    def _warp(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = image.shape[-2:]
        coords = None
        if self.affine and self.rng.random() < AFFINE_P:
            coords = _affine_coords(size, self.rng)
        if self.elastic and self.rng.random() < ELASTIC_P:
            base = coords if coords is not None else np.indices(size, dtype=float)
            coords = base + _elastic_field(size, self.rng)
        if coords is None:
            return image, labels
        warped = np.empty(image.shape, np.float32)
        for index in np.ndindex(*image.shape[:-2]):
            warped[index] = ndi.map_coordinates(image[index], coords, order=1, mode="reflect")
        moved = np.empty(labels.shape, labels.dtype)
        for t in range(len(labels)):
            moved[t] = ndi.map_coordinates(labels[t].astype(np.float64), coords, order=0,
                                           mode="constant", cval=-1)
        return warped, moved

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        lo, hi = float(image.min()), float(image.max())
        if hi > lo:
            gamma = np.exp(rng.uniform(-0.3, 0.3))
            image = lo + (hi - lo) * ((image - lo) / (hi - lo)) ** gamma
        image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        if rng.random() < BLUR_P:
            image = ndi.gaussian_filter(image, (0, 0, *([rng.uniform(0.3, 1.0)] * 2)))
        sigma = rng.uniform(0.0, 0.05)
        return image + rng.normal(0.0, sigma, image.shape)


def _affine_coords(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Source coordinates ``(2, Y, X)`` of a rotation, scaling and shear about the centre."""
    angle = rng.uniform(-np.pi, np.pi)
    scale = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    shear = rng.uniform(-0.15, 0.15)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) / scale
    centre = (np.asarray(size, float) - 1) / 2
    grid = np.indices(size, dtype=float).reshape(2, -1) - centre[:, None]
    return (matrix @ grid + centre[:, None]).reshape(2, *size)


def _elastic_field(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacement ``(2, Y, X)`` from random shifts of a coarse grid of points.

    Each pixel takes a Gaussian-weighted mean of the grid shifts; the weights
    are separable, so the field is two small matrix products per axis.
    """
    coarse = rng.normal(0.0, ELASTIC_SHIFT, (2, ELASTIC_GRID, ELASTIC_GRID))
    wy, wx = (_smooth_weights(n) for n in size)
    return np.einsum("yg,cgh,xh->cyx", wy, coarse, wx)


def _smooth_weights(n: int) -> np.ndarray:
    """``(n, ELASTIC_GRID)`` Gaussian weights of evenly spread grid points, rows sum to 1."""
    centres = (np.arange(ELASTIC_GRID) + 0.5) * n / ELASTIC_GRID
    spread = n / ELASTIC_GRID
    weights = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / spread) ** 2)
    return weights / weights.sum(1, keepdims=True)
