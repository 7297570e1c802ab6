"""Augmentation of training clips, identical for every frame of a clip.

Geometry (flips, 90 degree turns, affine warps, elastic deformation) moves
image and labels together; labels are resampled by nearest neighbour so ids
and the -1 "unannotated" value survive unchanged, and pixels brought in from
outside the clip are -1. Intensity changes touch the image only.

*Acquisition* changes (:class:`AcquisitionSettings`) imitate another microscope
session on the already normalised clip: contrast over the background divided
by a large factor with the noise kept at the frame's own level (plus
signal-dependent shot noise), a slow background gradient, brightness drifting
from frame to frame; each frame is then normalised again (data/normalize.py), as
inference would see the dimmer frame. Without them a network never meets a dim
frame: on the shared SIM+ sequence nuclei stand 22-58 grey levels over a
background with noise 4.5 (SNR 5-13), on its other sequence 4-15 over 3.5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.normalize import PERCENTILES, Norm, channel_range
from instatrack.settings import Settings, require

#: probabilities of the optional transforms
AFFINE_P = 0.5
ELASTIC_P = 0.3
BLUR_P = 0.3
#: elastic deformation: control points per side and the std of their shifts (pixels);
#: the smoothing shrinks the shifts to about 2.4 pixels per pixel
ELASTIC_GRID = 4
ELASTIC_SHIFT = 6.0
#: bright spots (``aug_spots_p``): at most this many per object, within this share of its
#: radius from its centre, Gaussian sigmas and least height (over the object's contrast)
SPOT_COUNT = 6
SPOT_REACH = 0.6
SPOT_SIGMA = (0.08, 0.22)
SPOT_MIN_HEIGHT = 0.5


@dataclasses.dataclass(frozen=True)
class AcquisitionSettings(Settings):
    """How far training clips are pushed towards other acquisition conditions.

    ``aug_dim_p``: probability that a clip is dimmed; ``aug_dim_max``: the
    largest factor the contrast over the background is divided by (drawn
    log-uniformly from ``[1, aug_dim_max]``, the noise kept at the frame's
    level); ``aug_shot_noise``: scale of the added signal-dependent noise (0 =
    none); ``aug_gradient``: largest background slope across the crop, relative
    to the normalised range before dimming; ``aug_drift``: largest
    frame-to-frame brightness change within a clip (relative);
    ``aug_blur_max``: largest Gaussian blur sigma in pixels; ``aug_gamma``:
    largest ``|log gamma|``. ``aug_object_dim_p``: probability that a clip has
    its objects dimmed one by one (each, with probability one half, by its own
    factor drawn log-uniformly from ``[1, aug_object_dim_max]``, the same in every
    frame, the noise kept), so that dim objects stand beside bright ones, as in
    GOWT1 (0 here; spatial-embedding's presets set 0.5, measured in session 9:
    docs/robustness.md). ``aug_clip_p``: probability that a clip's background is
    clipped, as a camera offset does (GOWT1: over half of each frame at 0, so
    its dim nuclei sit on a flat, noiseless background), at the background level
    plus up to ``aug_clip_max`` noise stds (drawn uniformly from ``[0, aug_clip_max]``).
    ``aug_noise_floor``: the least noise std the dimming keeps, as a share of the
    frame's range over its background (its 99.8 % percentile minus its level): a frame
    whose background shows no noise (clipped, as GOWT1's) is dimmed as if its sensor
    had that much, instead of coming back unchanged after renormalisation (0 = the
    measured noise only; SIM+'s sensor: 0.036, MSC's 0.065).
    ``aug_spots_p``: probability that a clip's objects get bright spots (each
    object with probability one half: 1-6 Gaussian foci inside it, up to
    ``aug_spots_max`` times its own contrast over the background, moving with it
    from frame to frame), so that a nucleus whose chromatin condenses into bright
    foci over a dim body (SIM+ before division) stays one whole object; a network
    that learnt GOWT1's even nuclei outlines only the foci (docs/results.md,
    session 13).
    ``AcquisitionSettings.off()`` reproduces the augmentation before these existed.
    """

    aug_dim_p: float = 0.6
    aug_dim_max: float = 20.0
    aug_shot_noise: float = 1.0
    aug_gradient: float = 0.1
    aug_drift: float = 0.1
    aug_blur_max: float = 1.5
    aug_gamma: float = 0.3
    aug_object_dim_p: float = 0.0
    aug_object_dim_max: float = 10.0
    aug_clip_p: float = 0.0
    aug_clip_max: float = 2.0
    aug_noise_floor: float = 0.0
    aug_spots_p: float = 0.0
    aug_spots_max: float = 3.0

    def check(self) -> None:
        super().check()
        require(0 <= self.aug_dim_p <= 1, f"aug_dim_p must be in [0, 1], got {self.aug_dim_p}")
        require(self.aug_dim_max >= 1, f"aug_dim_max must be >= 1, got {self.aug_dim_max}")
        for name in ("aug_shot_noise", "aug_gradient", "aug_blur_max"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(0 <= self.aug_drift < 1, f"aug_drift must be in [0, 1), got {self.aug_drift}")
        require(0 <= self.aug_gamma <= 2, f"aug_gamma must be in [0, 2], got {self.aug_gamma}")
        require(0 <= self.aug_object_dim_p <= 1,
                f"aug_object_dim_p must be in [0, 1], got {self.aug_object_dim_p}")
        require(self.aug_object_dim_max >= 1,
                f"aug_object_dim_max must be >= 1, got {self.aug_object_dim_max}")
        require(0 <= self.aug_clip_p <= 1, f"aug_clip_p must be in [0, 1], got {self.aug_clip_p}")
        require(self.aug_clip_max >= 0, f"aug_clip_max must be >= 0, got {self.aug_clip_max}")
        require(0 <= self.aug_noise_floor < 1,
                f"aug_noise_floor must be in [0, 1), got {self.aug_noise_floor}")
        require(0 <= self.aug_spots_p <= 1,
                f"aug_spots_p must be in [0, 1], got {self.aug_spots_p}")
        require(self.aug_spots_max >= SPOT_MIN_HEIGHT,
                f"aug_spots_max must be >= {SPOT_MIN_HEIGHT}, got {self.aug_spots_max}")

    @classmethod
    def off(cls) -> AcquisitionSettings:
        return cls(aug_dim_p=0.0, aug_shot_noise=0.0, aug_gradient=0.0, aug_drift=0.0,
                   aug_blur_max=1.0, aug_object_dim_p=0.0)


class Augmenter:
    """Random transforms of a clip, drawn from ``rng``.

    ``augmenter(image, labels)`` with image ``(T, C, Y, X)`` float32 and labels
    ``(T, Y, X)`` integers returns the transformed pair with the same shapes
    and dtypes (90 degree turns only when ``Y == X``). ``acquisition`` sets the
    intensity changes (the default is the robust recipe); ``norm`` are the
    normalisation a dimmed frame gets again, as at inference.
    """

    def __init__(self, rng: np.random.Generator, flips: bool = True, rot90: bool = True,
                 affine: bool = True, elastic: bool = True, intensity: bool = True,
                 acquisition: AcquisitionSettings | None = None,
                 norm: Norm = PERCENTILES):
        self.rng = rng
        self.flips, self.rot90, self.affine = flips, rot90, affine
        self.elastic, self.intensity = elastic, intensity
        self.acquisition = acquisition or AcquisitionSettings()
        self.norm = norm

    @property
    def warps(self) -> bool:
        """Whether pixels may come from outside the clip (callers may crop with a margin)."""
        return self.affine or self.elastic

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image, labels = self._turn(image, labels)
        image, labels = self._warp(image, labels)
        if self.intensity:
            image = self._spots(image, labels)
            image = self._object_contrast(image, labels)
            image = self._acquisition(image, labels)
            image = self._clipped(image, labels)
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

    def _acquisition(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Dimmer contrast at the same noise, uneven background, drift; renormalised."""
        settings, rng = self.acquisition, self.rng
        if settings.aug_dim_p <= 0 or rng.random() >= settings.aug_dim_p:
            return image
        factor = np.exp(rng.uniform(0.0, np.log(settings.aug_dim_max)))
        gains = np.exp(rng.uniform(-settings.aug_drift, settings.aug_drift, len(image))) \
            if settings.aug_drift > 0 else np.ones(len(image))
        slope = rng.uniform(-settings.aug_gradient, settings.aug_gradient, 2)
        ramp = _ramp(image.shape[-2:], slope)
        shot = rng.uniform(0.0, settings.aug_shot_noise)
        out = np.empty(image.shape, np.float32)
        for t in range(len(image)):
            level, noise = background_and_noise(image[t], labels[t])
            if settings.aug_noise_floor > 0:
                top = np.percentile(image[t].reshape(len(level), -1), 99.8, axis=1)
                noise = np.maximum(noise, settings.aug_noise_floor * (top - level))
            scale = gains[t] / factor
            signal = (image[t] - level[:, None, None] + ramp) * scale
            shot_variance = shot * noise[:, None, None] * np.maximum(signal, 0.0)
            frame = _noise_kept(level, signal, noise, scale, rng, shot_variance)
            out[t] = _renormalise(frame, self.norm)
        return out

    def _spots(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Bright foci inside some objects, at the same place relative to each object's
        centre and size in every frame; renormalised."""
        settings, rng = self.acquisition, self.rng
        if settings.aug_spots_p <= 0 or rng.random() >= settings.aug_spots_p:
            return image
        ids = [i for i in np.unique(labels[labels > 0]).tolist() if rng.random() < 0.5]
        if not ids:
            return image
        spots = {i: _draw_spots(rng, settings.aug_spots_max) for i in ids}
        out = np.array(image, np.float32)
        for t in range(len(image)):
            level, _ = background_and_noise(image[t], labels[t])
            boxes = ndi.find_objects(np.maximum(labels[t], 0))
            for i in ids:
                if i > len(boxes) or boxes[i - 1] is None:
                    continue
                window = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in boxes[i - 1])
                mask = labels[t][window] == i
                inside = image[t][(slice(None), *window)][:, mask]
                contrast = np.maximum(np.median(inside, axis=1) - level, 0.0)
                bumps = _spot_image(mask, spots[i])
                out[t][(slice(None), *window)] += contrast[:, None, None] * bumps
            out[t] = _renormalise(out[t], self.norm)
        return out

    def _object_contrast(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Some objects dimmed, each by its own factor (the same in every frame); renormalised."""
        settings, rng = self.acquisition, self.rng
        if settings.aug_object_dim_p <= 0 or rng.random() >= settings.aug_object_dim_p:
            return image
        ids = np.unique(labels[labels > 0])
        if len(ids) == 0:
            return image
        factors = np.exp(rng.uniform(0.0, np.log(settings.aug_object_dim_max), len(ids)))
        factors[rng.random(len(ids)) < 0.5] = 1.0
        # attenuation 1 - 1/f on each object's pixels, spread one pixel and softened so
        # the object's blurred rim is dimmed with it
        attenuation = np.zeros(int(ids.max()) + 1, np.float32)
        attenuation[ids] = 1.0 - 1.0 / factors
        out = np.empty(image.shape, np.float32)
        for t in range(len(image)):
            lost = attenuation[np.maximum(labels[t], 0)]
            lost = ndi.gaussian_filter(ndi.grey_dilation(lost, size=3), 1.0)
            keep = 1.0 - lost
            level, noise = background_and_noise(image[t], labels[t])
            signal = (image[t] - level[:, None, None]) * keep
            out[t] = _renormalise(_noise_kept(level, signal, noise, keep, rng), self.norm)
        return out

    def _clipped(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The background clipped at its level plus a few noise stds; renormalised."""
        settings, rng = self.acquisition, self.rng
        if settings.aug_clip_p <= 0 or rng.random() >= settings.aug_clip_p:
            return image
        stds = rng.uniform(0.0, settings.aug_clip_max)
        out = np.empty(image.shape, np.float32)
        for t in range(len(image)):
            level, noise = background_and_noise(image[t], labels[t])
            floor = (level + stds * noise)[:, None, None]
            out[t] = _renormalise(np.maximum(image[t], floor), self.norm)
        return out

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        rng, settings = self.rng, self.acquisition
        lo, hi = float(image.min()), float(image.max())
        if hi > lo and settings.aug_gamma > 0:
            gamma = np.exp(rng.uniform(-settings.aug_gamma, settings.aug_gamma))
            image = lo + (hi - lo) * ((image - lo) / (hi - lo)) ** gamma
        image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        if rng.random() < BLUR_P:
            sigma = rng.uniform(0.3, max(settings.aug_blur_max, 0.3))
            image = ndi.gaussian_filter(image, (0, 0, sigma, sigma))
        sigma = rng.uniform(0.0, 0.05)
        return image + rng.normal(0.0, sigma, image.shape)


def _draw_spots(rng: np.random.Generator, top: float) -> np.ndarray:
    """``(n, 4)``: each spot's offset y, x from the object's centre and its Gaussian
    sigma, in units of the object's radius, and its height over the object's contrast."""
    n = int(rng.integers(1, SPOT_COUNT + 1))
    radius = np.sqrt(rng.uniform(0.0, 1.0, n)) * SPOT_REACH
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([radius * np.sin(angle), radius * np.cos(angle),
                     rng.uniform(*SPOT_SIGMA, n), rng.uniform(SPOT_MIN_HEIGHT, top, n)], 1)


def _spot_image(mask: np.ndarray, spots: np.ndarray) -> np.ndarray:
    """The spots drawn in ``mask``'s window (relative heights), kept inside the object by
    its mask softened one pixel."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    r = np.sqrt(len(ys) / np.pi)
    yy, xx = np.indices(mask.shape, dtype=np.float32)
    total = np.zeros(mask.shape, np.float32)
    for dy, dx, sigma, height in spots:
        d2 = (yy - cy - dy * r) ** 2 + (xx - cx - dx * r) ** 2
        total += height * np.exp(-d2 / (2 * (sigma * r) ** 2))
    return total * ndi.gaussian_filter(mask.astype(np.float32), 1.0)


def background_and_noise(frame: np.ndarray, labels: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per channel background level and noise std ``(C,)``, ``(C,)`` of a ``(C, Y, X)`` frame.

    The level is the median over known background pixels (``labels == 0``)
    when at least 5 % of the frame is such, else over the whole frame; the
    noise is the robust (MAD) std of differences of horizontal neighbours over
    the same pixels, divided by sqrt 2 (smooth objects barely change it);
    both over every other row.
    """
    # every other row: the medians cost half and barely move
    frame = frame[..., ::2, :]
    labels = None if labels is None else labels[::2, :]
    mask = None
    if labels is not None and np.mean(labels == 0) >= 0.05:
        mask = labels == 0
    levels, noises = [], []
    for channel in frame:
        values = channel[mask] if mask is not None else channel.ravel()
        diffs = np.diff(channel, axis=-1)
        if mask is not None:
            diffs = diffs[mask[:, 1:] & mask[:, :-1]]
        diffs = diffs.ravel() if diffs.size else np.zeros(1)
        levels.append(np.median(values))
        noises.append(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2))
    return np.asarray(levels, np.float32), np.asarray(noises, np.float32)


def _noise_kept(level: np.ndarray, signal: np.ndarray, noise: np.ndarray, scale,
                rng: np.random.Generator, extra_variance=0.0) -> np.ndarray:
    """A ``(C, Y, X)`` frame: background ``level`` ``(C,)`` plus ``signal`` (already
    multiplied by ``scale``, a number or a ``(Y, X)`` map <= 1), plus fresh noise that
    brings the scaled noise std ``noise * scale`` back up to ``noise`` (``(C,)``), and
    ``extra_variance`` (e.g. shot noise) on top."""
    variance = noise[:, None, None] ** 2 * np.maximum(1.0 - np.square(scale), 0.0)
    return level[:, None, None] + signal + rng.normal(0.0, 1.0, signal.shape) \
        * np.sqrt(variance + extra_variance)


def _ramp(size: tuple[int, int], slope: np.ndarray) -> np.ndarray:
    """A plane ``(Y, X)`` through 0 at the centre rising by ``slope`` across the crop."""
    yy = np.linspace(-0.5, 0.5, size[0], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, size[1], dtype=np.float32)[None, :]
    return (slope[0] * yy + slope[1] * xx).astype(np.float32)


def _renormalise(frame: np.ndarray, norm: Norm) -> np.ndarray:
    """Normalise each channel of a ``(C, Y, X)`` frame again, as ``norm`` does at inference."""
    out = np.empty(frame.shape, np.float32)
    for c, channel in enumerate(frame):
        lo, hi = channel_range(channel, norm.low, norm.high, norm.mode)
        out[c] = (channel - lo) / (hi - lo if hi - lo > 1e-6 else 1.0)
    return out


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
    return np.stack([wy @ grid @ wx.T for grid in coarse])


def _smooth_weights(n: int) -> np.ndarray:
    """``(n, ELASTIC_GRID)`` Gaussian weights of evenly spread grid points, rows sum to 1."""
    centres = (np.arange(ELASTIC_GRID) + 0.5) * n / ELASTIC_GRID
    spread = n / ELASTIC_GRID
    weights = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / spread) ** 2)
    return weights / weights.sum(1, keepdims=True)
