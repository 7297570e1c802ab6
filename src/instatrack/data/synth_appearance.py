"""How synthetic nuclei and their microscope look: shapes, brightness, texture, optics.

:class:`Appearance` holds the rendering knobs of :func:`instatrack.data.synth.generate_cells`
that do not change how cells move or divide. Its defaults are the original look of
``instatrack synth`` (the same seed gives the same movie as before they existed);
:mod:`instatrack.data.synth_random` draws them broadly for training data of
pretrained models. The functions below turn the simulated cells into an image:
the brightness of one nucleus, the uneven illumination, and the camera.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.settings import Settings, require

#: outline harmonics drift up to this multiple of their initial range (0.15 for 0.08)
SHAPE_CEILING = 1.875
#: elongation drifts up to this much above the initial range
ASPECT_HEADROOM = 0.2
#: at most this many arms per spread cell (:attr:`Appearance.arms`)
ARM_SLOTS = 4


@dataclasses.dataclass(frozen=True)
class Appearance(Settings):
    """Rendering knobs; intensities are relative to a bright nucleus (about 1).

    ``aspect_max``: major / minor axis of a nucleus drawn from ``[1, aspect_max]``;
    ``irregularity``: amplitude of the outline's harmonics (2, 3 and 4 lobes) drawn
    from ``[0, irregularity]``; ``bright_min``: a nucleus's brightness is drawn from
    ``[bright_min, 1]``; ``dome``: darkening from the centre to the rim;
    ``texture``: amplitude of the chromatin-like texture, ``texture_scale`` its
    spatial frequency (radians per pixel, std of the wave vectors); ``contrast``:
    factor on the fluorescence (the noise floor stays); ``background``: level of
    the illumination, ``gradient`` the std of its slope across the field, ``blob``
    the height of a broad bright patch; ``blur``: Gaussian sigma of the optics (px).

    Spread cells (mesenchymal-like, MSC): ``arms`` is the expected number of
    protrusions per cell (each of :data:`ARM_SLOTS` slots holds one with probability
    ``arms / ARM_SLOTS``; 0, the default, draws none and leaves every movie as it was);
    an arm reaches up to ``arm_length`` radii beyond the outline and spans up to
    ``arm_width`` radians around its direction (narrow: a tapering arm; wide: a lobe,
    so one cell holds several cores). Light fades along an arm (thin cytoplasm).

    Unannotated clutter, also MSC's (0, the default, draws none and leaves every movie
    as it was): ``ghosts``, out-of-focus cells in another plane as a share of the cells
    in focus (faint, blurred over a third of their radius, not in the ground truth);
    ``specks``, small bright debris per 100 x 100 pixels (Gaussian spots of 0.8-2 px
    sigma, 1-3 times a bright nucleus's light, not in the ground truth). ``ghost_light``:
    the brightest ghost's light as a share of a cell's in focus; each ghost keeps a
    dimness between 0.3 and 1 of it (the default 0.4 draws them at 0.12-0.4, as session
    43 did; session 47 tried dimmer ghosts, below the dimmest nuclei GOWT1 annotates).
    """

    aspect_max: float = 1.6
    irregularity: float = 0.08
    bright_min: float = 0.45
    dome: float = 0.35
    texture: float = 0.08
    texture_scale: float = 0.6
    contrast: float = 1.0
    background: float = 0.12
    gradient: float = 0.04
    blob: float = 0.06
    blur: float = 1.0
    arms: float = 0.0
    arm_length: float = 1.5
    arm_width: float = 0.35
    ghosts: float = 0.0
    specks: float = 0.0
    ghost_light: float = 0.4

    def check(self) -> None:
        super().check()
        require(self.aspect_max >= 1, f"aspect_max must be >= 1, got {self.aspect_max}")
        require(0 <= self.bright_min <= 1, f"bright_min must be in [0, 1], got {self.bright_min}")
        require(0 <= self.dome < 1, f"dome must be in [0, 1), got {self.dome}")
        for name in ("irregularity", "texture", "texture_scale", "background", "gradient",
                     "blob", "blur"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.contrast > 0, f"contrast must be > 0, got {self.contrast}")
        require(0 <= self.arms <= ARM_SLOTS, f"arms must be in [0, {ARM_SLOTS}], got {self.arms}")
        require(self.arm_length >= 0, f"arm_length must be >= 0, got {self.arm_length}")
        require(self.arm_width > 0, f"arm_width must be > 0, got {self.arm_width}")
        require(self.ghosts >= 0, f"ghosts must be >= 0, got {self.ghosts}")
        require(self.specks >= 0, f"specks must be >= 0, got {self.specks}")
        require(0 < self.ghost_light <= 1,
                f"ghost_light must be in (0, 1], got {self.ghost_light}")


def nucleus_intensity(bright: float, waves: np.ndarray, dy: np.ndarray, dx: np.ndarray,
                      rel: np.ndarray, look: Appearance) -> np.ndarray:
    """Dome-shaped brightness with a texture that moves with the nucleus.

    ``waves`` ``(3, 3)``: wave vector y, x and phase of three texture waves;
    ``dy``, ``dx``: offsets from the centre; ``rel``: relative radius (< 1 inside).
    """
    texture = sum(np.cos(waves[0, k] * dy + waves[1, k] * dx + waves[2, k]) for k in range(3))
    return bright * (1.0 - look.dome * rel ** 2) * (1.0 + look.texture * texture)


def arm_fade(beyond: np.ndarray) -> np.ndarray:
    """Light of a spread cell's arm ``beyond`` radii past its body (0 inside it): thin
    cytoplasm, half as bright one radius out, never below a quarter."""
    return 0.25 + 0.75 / (1.0 + np.clip(beyond, 0, None) ** 2)


def illumination(size: tuple[int, int], rng: np.random.Generator,
                 look: Appearance) -> np.ndarray:
    """Uneven illumination ``(Y, X)``: a level, a tilted plane and a broad blob."""
    yy, xx = np.mgrid[0:size[0], 0:size[1]] / max(size)
    tilt = rng.normal(0, look.gradient, 2)
    centre = rng.uniform(0, 1, 2)
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 0.15)
    return look.background + tilt[0] * yy + tilt[1] * xx + look.blob * blob


def camera(signal: np.ndarray, noise: float, rng: np.random.Generator,
           look: Appearance) -> np.ndarray:
    """Blur, shot noise and read noise; float intensities -> uint16 counts."""
    blurred = ndi.gaussian_filter(np.clip(signal, 0, None), look.blur)
    if noise > 0:
        photons = 10.0 / noise ** 2
        blurred = rng.poisson(blurred * photons) / photons
        blurred = blurred + rng.normal(0.0, 0.3 * noise, blurred.shape)
    return np.clip(100 + 1000 * blurred, 0, 65535).astype(np.uint16)
