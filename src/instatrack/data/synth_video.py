"""Synthetic colour videos of moving, deforming objects over moving, cluttered backgrounds.

For pretraining the semi-supervised video methods (spatial propagation) without
real videos. Each video draws, from its own seed:

* a background: a world larger than the frame, painted with a colour gradient,
  multi-scale colour noise and textured clutter shapes (never annotated), seen
  through a camera that pans, rotates and zooms a little from frame to frame;
* one to ``max_objects`` objects: one to three star-shaped blobs (parts) of random
  outline and elongation, each with its own texture (colour noise, stripes) and shading,
  moving with their own translation, rotation and scale change and a smooth
  non-rigid warp; they overlap and occlude one another in a fixed depth order;
* which objects are annotated: at least one, the others are distractors that
  occlude like objects but are background in the annotation (as in DAVIS,
  where one object of the scene is the target);
* acquisition: blur, noise, brightness and contrast, JPEG compression on writing;
* with ``articulation``, ``motion_blur`` or ``flat`` above 0, motion that an optical
  flow follows badly, as in real videos: parts that swing about where they join the
  object (a rider's arms and a bike's wheels do not move as one), objects smeared along
  their motion while their annotation stays sharp, and untextured object parts and
  backgrounds (sky, a plain wall) where the flow has nothing to lock on to;
* with ``thin`` above 0, object parts drawn as wheels: a rim and spokes that turn, the
  background showing between them (a bike's wheels, a fence: real objects are not all
  solid, and a flow or a network that fills them in marks the background as object);
* with ``restyle`` above 0, objects that change their look over the video: each part's
  texture fades into another one (a turning rider shows another side, an approaching
  one detail that was not there), so what was learnt on frame 0 goes stale;
* with ``photos`` above 0, real textures: the background and the textures of clutter and
  object parts are, with that probability each, crops of photographs that scikit-image
  ships (CC0 or public domain, no download; :data:`PHOTOS`), randomly zoomed, turned,
  mirrored and recoloured (the "static images with synthetic motion" of the video
  segmentation literature).

:func:`generate_video` returns the frames and labels; :func:`write_davis_videos`
writes videos in the DAVIS layout the reader understands
(``JPEGImages/480p/NAME/00000.jpg``, ``Annotations/480p/NAME/00000.png``) with
``synth.json`` recording each video's seed. Everything depends only on the seed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from instatrack.errors import ConfigError
from instatrack.settings import Settings, require

#: the file in the dataset folder recording the settings and each video's seed
RECORD = "synth.json"
#: photographs bundled with scikit-image (``skimage.data``, no download) that ``photos``
#: draws textures from; each is CC0 or public domain (their docstrings say which)
PHOTOS = ("astronaut", "cat", "coffee", "rocket", "brick", "grass", "gravel")


@dataclasses.dataclass(frozen=True)
class VideoSettings(Settings):
    """What the synthetic videos draw from (each video draws its own values).

    Sizes are fractions of the frame's smaller side; speeds are per frame.
    ``distractor_rate``: probability that an object besides the first
    annotated one is not annotated. ``photos``: probability that the background, and
    each texture of a clutter shape or an object part, is a crop of a photograph
    (:data:`PHOTOS`) instead of procedural noise; 0 draws exactly the videos drawn
    before the setting existed.

    Motion the optical flow follows badly (0 draws exactly the videos drawn before
    these existed; ``benchmarks/flow_difficulty.py`` measures a set): ``articulation``,
    the largest swing in radians of an object's second and third parts about where
    they join it, each part at its own pace; ``motion_blur``, objects are smeared over
    this fraction of their displacement since the previous frame (1: the shutter open
    all the frame long; frame 0, with no motion before it, stays sharp), their
    annotation left sharp; ``flat``: probability that the background,
    and each object part, is one flat colour (the background with a faint gradient).
    ``thin``: probability that an object part is a wheel, a rim and three to eight
    spokes turning at their own pace, with the background between them (background in
    the annotation too). ``restyle``: the fraction of its look an object part changes a
    frame (each part at 0.5-1 times this pace): its texture fades into a second one.
    """

    max_objects: int = 3
    distractor_rate: float = 0.3
    radius: tuple[float, float] = (0.1, 0.32)
    speed: float = 0.025
    spin: float = 0.06
    zoom: float = 0.02
    # the scale an object's zoom stays within (relative to its first frame); it turns
    # back at the limits. Wide limits with a large zoom: approaching objects
    scale_range: tuple[float, float] = (0.6, 1.6)
    warp: float = 0.12
    camera_speed: float = 0.02
    clutter: int = 12
    noise: tuple[float, float] = (0.0, 0.06)
    blur: tuple[float, float] = (0.0, 1.2)
    photos: float = 0.0
    articulation: float = 0.0
    motion_blur: float = 0.0
    flat: float = 0.0
    thin: float = 0.0
    restyle: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.max_objects >= 1, f"max_objects must be >= 1, got {self.max_objects}")
        require(0 <= self.distractor_rate <= 1,
                f"distractor_rate must be in [0, 1], got {self.distractor_rate}")
        require(0 < self.radius[0] <= self.radius[1] <= 1,
                f"radius must be 0 < low <= high <= 1, got {self.radius}")
        require(0 < self.scale_range[0] < 1 < self.scale_range[1],
                f"scale_range must be 0 < low < 1 < high, got {self.scale_range}")
        for name in ("speed", "spin", "zoom", "warp", "camera_speed"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.clutter >= 0, f"clutter must be >= 0, got {self.clutter}")
        for name in ("photos", "flat", "thin", "restyle"):
            require(0 <= getattr(self, name) <= 1,
                    f"{name} must be in [0, 1], got {getattr(self, name)}")
        require(0 <= self.articulation <= np.pi,
                f"articulation must be in [0, pi] (radians), got {self.articulation}")
        require(0 <= self.motion_blur <= 3,
                f"motion_blur must be in [0, 3] (frame displacements), got {self.motion_blur}")
        for name in ("noise", "blur"):
            low, high = getattr(self, name)
            require(0 <= low <= high, f"{name} must be 0 <= low <= high, got {(low, high)}")


# -- textures -------------------------------------------------------------------------------------
def colour_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """``(Y, X, 3)`` colour texture in ``[0, 1]``: a base colour, a second colour mixed
    in by multi-scale noise (features of about ``scale`` pixels and finer), optional stripes."""
    base, other = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    mix = np.zeros(shape, np.float32)
    sigma, weight = max(scale, 1.0), 1.0
    while sigma >= 0.7:
        mix += weight * _smooth_noise(rng, shape, sigma)
        sigma, weight = sigma / 2, weight * rng.uniform(0.4, 1.0)
    mix = (mix - mix.min()) / max(float(np.ptp(mix)), 1e-6)
    if rng.random() < 0.3:
        yy, xx = np.indices(shape, dtype=np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 4 + scale)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * np.cos(angle) + xx * np.sin(angle))
                                     / period)
        mix = 0.5 * mix + 0.5 * stripes
    contrast = rng.uniform(0.2, 1.0)
    texture = base + contrast * mix[..., None] * (other - base)
    return np.clip(texture, 0, 1).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The :data:`PHOTOS` as ``(Y, X, 3)`` float32 in ``[0, 1]`` (grey ones repeated)."""
    from skimage import data

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)(), np.float32) / 255
        photos.append(np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3])
    return tuple(photos)


def photo_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """``(Y, X, 3)`` texture in ``[0, 1]`` cut from a random one of :data:`PHOTOS`:
    zoomed by 0.5-2 (log-uniform), turned by a multiple of 90 degrees, perhaps mirrored,
    mirrored again at its edges where the frame needs more than the photograph holds,
    and recoloured (channel gains 0.7-1.3, channels swapped 3 times in 10)."""
    photos = _photos()
    photo = np.rot90(photos[int(rng.integers(len(photos)))], int(rng.integers(4)))
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
    zoom = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    need = [int(np.ceil(n / zoom)) + 1 for n in shape]
    short = [max(n - have, 0) for n, have in zip(need, photo.shape[:2], strict=True)]
    if any(short):
        photo = np.pad(photo, [(0, short[0]), (0, short[1]), (0, 0)], mode="symmetric")
    y0 = int(rng.integers(photo.shape[0] - need[0] + 1))
    x0 = int(rng.integers(photo.shape[1] - need[1] + 1))
    crop = photo[y0:y0 + need[0], x0:x0 + need[1]]
    yy, xx = np.indices(shape, dtype=np.float32) / zoom
    texture = np.stack([ndi.map_coordinates(crop[..., c], [yy, xx], order=1, mode="nearest")
                        for c in range(3)], -1)
    order = rng.permutation(3) if rng.random() < 0.3 else np.arange(3)
    return np.clip(texture[..., order] * rng.uniform(0.7, 1.3, 3), 0, 1).astype(np.float32)


def _texture(rng: np.random.Generator, shape: tuple[int, int], scale: float,
             photos: float) -> np.ndarray:
    """A photograph's texture with probability ``photos``, else :func:`colour_noise`
    (no random number is drawn for the choice when ``photos`` is 0)."""
    if photos and rng.random() < photos:
        return photo_texture(rng, shape)
    return colour_noise(rng, shape, scale)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean noise of unit spread, smooth over ``sigma`` pixels (made at low resolution)."""
    step = max(int(sigma // 2), 1)
    small = (shape[0] // step + 2, shape[1] // step + 2)
    noise = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / step)
    noise = ndi.zoom(noise, step, order=1)[:shape[0], :shape[1]]
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def gradient(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """``(Y, X, 3)`` linear blend between two random colours along a random direction."""
    yy, xx = np.indices(shape, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = yy * np.sin(angle) + xx * np.cos(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return (a + ramp[..., None] * (b - a)).astype(np.float32)


# -- shapes ---------------------------------------------------------------------------------------
def star_radius(theta: np.ndarray, harmonics: np.ndarray) -> np.ndarray:
    """Relative outline radius at angles ``theta``: ``1 + sum_k a_k cos(k theta + p_k)``.

    ``harmonics``: ``(K, 3)`` rows ``(k, a_k, p_k)``.
    """
    r = np.ones_like(theta)
    for k, amplitude, phase in harmonics:
        r = r + amplitude * np.cos(k * theta + phase)
    return r


def random_harmonics(rng: np.random.Generator, roughness: float) -> np.ndarray:
    """Outline harmonics 2..6 whose amplitudes fall as ``1 / k`` and sum below 0.8."""
    ks = np.arange(2, 7, dtype=np.float64)
    amplitudes = roughness * rng.uniform(0, 1, len(ks)) / ks
    amplitudes *= min(1.0, 0.8 / max(amplitudes.sum(), 1e-9))
    return np.stack([ks, amplitudes, rng.uniform(0, 2 * np.pi, len(ks))], 1)


@dataclasses.dataclass
class _Part:
    """A blob of an object: offset from the object's centre, outline and texture."""

    offset: np.ndarray           # (2,) in object coordinates
    radius: float
    aspect: float
    harmonics: np.ndarray
    texture: np.ndarray          # (S, S, 3), part coordinates centred at S / 2
    shading: float
    # swing about the object's centre (articulation): amplitude (rad), pace (rad/frame), phase
    swing: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # a wheel (thin): spokes (0 = a solid part), rim width (fraction of the radius),
    # turn (rad/frame), spoke width (fraction of the radius)
    wheel: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)
    # restyle: the texture this part fades into, and the fraction of the way a frame
    later: np.ndarray | None = None
    fade: float = 0.0

    def look(self, t: int) -> np.ndarray:
        """The part's texture at frame ``t``."""
        if self.later is None:
            return self.texture
        weight = min(1.0, self.fade * t)
        return (1 - weight) * self.texture + weight * self.later


@dataclasses.dataclass
class _Object:
    """One object's parts (real objects have parts of other colours: a rider and a bike)
    and its motion state (centre in frame pixels)."""

    radius: float
    parts: list[_Part]
    centre: np.ndarray           # (2,) y, x
    velocity: np.ndarray         # (2,)
    angle: float
    spin: float
    scale: float
    growth: float
    warp: np.ndarray             # (2, 4): per axis, frequency y, frequency x, phase, speed
    warp_amplitude: float


def _part_texture(rng: np.random.Generator, size: int, radius: float,
                  photos: float) -> np.ndarray:
    """A ``(size, size, 3)`` texture for a part of ``radius``: features of 1.5 px up to
    0.4 of the radius."""
    return _texture(rng, (size, size), rng.uniform(1.5, max(1.5, 0.4 * radius)), photos)


def _new_part(rng: np.random.Generator, radius: float, offset: np.ndarray,
              photos: float = 0.0) -> _Part:
    size = int(2 * radius * 2.2) + 4
    return _Part(offset=offset, radius=radius, aspect=rng.uniform(1.0, 2.2),
                 harmonics=random_harmonics(rng, rng.uniform(0.2, 1.5)),
                 texture=_part_texture(rng, size, radius, photos),
                 shading=rng.uniform(0.0, 0.5))


def _new_object(rng: np.random.Generator, shape: tuple[int, int], s: VideoSettings
                ) -> _Object:
    side = min(shape)
    radius = side * rng.uniform(*s.radius)
    parts = [_new_part(rng, radius, np.zeros(2), s.photos)]
    for _ in range(int(rng.integers(0, 3))):
        direction = rng.uniform(0, 2 * np.pi)
        offset = radius * rng.uniform(0.5, 1.0) * np.array([np.sin(direction),
                                                            np.cos(direction)])
        parts.append(_new_part(rng, radius * rng.uniform(0.3, 0.7), offset, s.photos))
    margin = np.array(shape) * 0.15
    centre = rng.uniform(margin, np.array(shape) - margin)
    direction = rng.uniform(0, 2 * np.pi)
    speed = side * s.speed * rng.uniform(0.2, 1.0)
    obj = _Object(
        radius=radius, parts=parts, centre=centre,
        velocity=speed * np.array([np.sin(direction), np.cos(direction)]),
        angle=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-s.spin, s.spin),
        scale=1.0, growth=rng.uniform(-s.zoom, s.zoom),
        warp=np.concatenate([rng.uniform(0.5, 2.5, (2, 2)), rng.uniform(0, 2 * np.pi, (2, 1)),
                             rng.uniform(0.1, 0.5, (2, 1))], 1),
        warp_amplitude=rng.uniform(0, s.warp))
    # drawn after everything else, and only when asked, so earlier videos stay the same
    if s.flat:
        for part in obj.parts:
            if rng.random() < s.flat:
                part.texture = np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32),
                                               part.texture.shape).copy()
    if s.articulation:
        for part in obj.parts[1:]:
            part.swing = (float(rng.uniform(0.3, 1.0) * s.articulation),
                          float(rng.uniform(0.1, 0.5)), float(rng.uniform(0, 2 * np.pi)))
    if s.thin:
        for part in obj.parts:
            if rng.random() < s.thin:
                part.wheel = (int(rng.integers(3, 9)), float(rng.uniform(0.1, 0.25)),
                              float(rng.uniform(-0.3, 0.3)), float(rng.uniform(0.06, 0.15)))
    if s.restyle:
        for part in obj.parts:
            part.later = _part_texture(rng, part.texture.shape[0], part.radius, s.photos)
            part.fade = float(rng.uniform(0.5, 1.0) * s.restyle)
    return obj


def _wheel(part: _Part, rho: np.ndarray, theta: np.ndarray, outline: np.ndarray,
           t: int) -> np.ndarray:
    """Where a wheel part has rim, spokes or hub (polar part coordinates ``rho``,
    ``theta`` and the outline's radius there), its spokes turned to frame ``t``."""
    spokes, rim, turn, width = part.wheel
    sector = 2 * np.pi / spokes
    off = np.abs(np.mod(theta - turn * t + sector / 2, sector) - sector / 2)
    half = 0.5 * width * part.radius
    return ((rho > (1 - rim) * outline) | (rho * np.sin(off) < half)
            | (rho < 2 * half))


def _move(obj: _Object, rng: np.random.Generator, shape: tuple[int, int],
          scale_range: tuple[float, float] = (0.6, 1.6)) -> None:
    """One frame of motion: drifting velocity that turns back near the frame's border."""
    obj.velocity = obj.velocity + rng.normal(0, 0.1 * (np.linalg.norm(obj.velocity) + 0.5), 2)
    obj.centre = obj.centre + obj.velocity
    for axis in range(2):
        low, high = 0.1 * shape[axis], 0.9 * shape[axis]
        if not low <= obj.centre[axis] <= high:
            obj.velocity[axis] = np.sign(0.5 * shape[axis] - obj.centre[axis]) * \
                abs(obj.velocity[axis])
    obj.angle += obj.spin
    low, high = scale_range
    obj.scale = float(np.clip(obj.scale * (1 + obj.growth), low, high))
    if not low < obj.scale < high:
        obj.growth = -obj.growth


def _render_object(obj: _Object, t: int, shape: tuple[int, int]
                   ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The object's window in the frame, its mask and colours ``(h, w, 3)`` there."""
    reach = obj.radius * obj.scale * 2.2 * 2.0 + 2
    y0, y1 = (int(max(obj.centre[0] - reach, 0)), int(min(obj.centre[0] + reach, shape[0])))
    x0, x1 = (int(max(obj.centre[1] - reach, 0)), int(min(obj.centre[1] + reach, shape[1])))
    if y1 <= y0 or x1 <= x0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = (yy - obj.centre[0]) / obj.scale, (xx - obj.centre[1]) / obj.scale
    cos, sin = np.cos(obj.angle), np.sin(obj.angle)
    u, v = cos * dy + sin * dx, -sin * dy + cos * dx
    # smooth non-rigid warp of the object's own coordinates, changing over time
    amplitude = obj.warp_amplitude * obj.radius
    fy, fx, phase, speed = obj.warp[0]
    u = u + amplitude * np.sin((fy * u + fx * v) / obj.radius + phase + speed * t)
    fy, fx, phase, speed = obj.warp[1]
    v = v + amplitude * np.sin((fy * u + fx * v) / obj.radius + phase + speed * t)
    mask = np.zeros(u.shape, bool)
    colour = np.zeros((*u.shape, 3), np.float32)
    for part in obj.parts:
        pu, pv = u, v
        amplitude, pace, phase = part.swing
        if amplitude:
            # the part turns about the object's centre, and with it
            turn = amplitude * np.sin(pace * t + phase)
            cos_turn, sin_turn = np.cos(turn), np.sin(turn)
            pu, pv = cos_turn * u + sin_turn * v, -sin_turn * u + cos_turn * v
        pu, pv = pu - part.offset[0], (pv - part.offset[1]) / part.aspect
        rho = np.hypot(pu, pv)
        theta = np.arctan2(pu, pv)
        outline = part.radius * star_radius(theta, part.harmonics)
        inside = (rho < outline) & ~mask
        if part.wheel[0]:
            inside &= _wheel(part, rho, theta, outline, t)
        if not inside.any():
            continue
        texture = part.look(t)
        half = texture.shape[0] / 2
        coords = [np.clip(pu[inside] + half, 0, 2 * half - 1),
                  np.clip(pv[inside] + half, 0, 2 * half - 1)]
        shade = 1 - part.shading * np.clip(rho[inside] / np.maximum(outline[inside], 1e-3),
                                           0, 1) ** 2
        colour[inside] = np.stack([ndi.map_coordinates(texture[..., c], coords, order=1)
                                   for c in range(3)], -1) * shade[:, None]
        mask |= inside
    if not mask.any():
        return None
    return (slice(y0, y1), slice(x0, x1)), mask, colour


# -- background -----------------------------------------------------------------------------------
def _world(rng: np.random.Generator, shape: tuple[int, int], s: VideoSettings) -> np.ndarray:
    """``(Y, X, 3)`` background world: gradient, colour noise (or a photograph) and
    textured clutter shapes."""
    if s.photos and rng.random() < s.photos:
        world = 0.2 * gradient(rng, shape) + 0.8 * photo_texture(rng, shape)
    elif s.flat and rng.random() < s.flat:
        # a plain backdrop: one colour with a faint gradient, and no clutter
        return (0.85 * rng.uniform(0, 1, 3) + 0.15 * gradient(rng, shape)).astype(np.float32)
    else:
        world = 0.5 * gradient(rng, shape) + 0.5 * colour_noise(rng, shape, rng.uniform(4, 40))
    side = min(shape)
    for _ in range(int(rng.integers(0, s.clutter + 1))):
        radius = side * rng.uniform(0.02, 0.12)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        reach = int(radius * 2.5) + 2
        y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach, shape[0])
        x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach, shape[1])
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        aspect, angle = rng.uniform(1, 3), rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = ((xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle)) / aspect
        outline = radius * star_radius(np.arctan2(u, v), random_harmonics(rng, 0.8))
        mask = np.hypot(u, v) < outline
        world[y0:y1, x0:x1][mask] = _texture(rng, mask.shape, rng.uniform(1, 8), s.photos)[mask]
    return world


def _camera_view(world: np.ndarray, shape: tuple[int, int], pose: np.ndarray) -> np.ndarray:
    """The ``shape`` frame a camera at ``pose`` (centre y, x, angle, zoom) sees of ``world``."""
    cy, cx, angle, zoom = pose
    yy, xx = np.indices(shape, dtype=np.float32)
    dy, dx = (yy - shape[0] / 2) / zoom, (xx - shape[1] / 2) / zoom
    cos, sin = np.cos(angle), np.sin(angle)
    coords = [cy + cos * dy - sin * dx, cx + sin * dy + cos * dx]
    return np.stack([ndi.map_coordinates(world[..., c], coords, order=1, mode="mirror")
                     for c in range(3)], -1)


# -- the video ------------------------------------------------------------------------------------
def generate_video(frames: int = 10, size: tuple[int, int] = (240, 432), seed: int = 0,
                   settings: VideoSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic video: ``(T, Y, X, 3)`` uint8 frames and ``(T, Y, X)`` int32 labels.

    Annotated objects have ids ``1..K`` (the same over the video); distractors,
    clutter and background are 0. An object may leave the frame or be hidden.
    """
    s = settings or VideoSettings()
    if frames < 1 or len(size) != 2 or min(size) < 16:
        raise ConfigError(f"need frames >= 1 and a size of at least 16 x 16, got {frames}, "
                          f"{size}")
    rng = np.random.default_rng(seed)
    shape = (int(size[0]), int(size[1]))
    margin = int(0.5 * max(shape))
    world = _world(rng, (shape[0] + 2 * margin, shape[1] + 2 * margin), s)
    side = min(shape)
    pose = np.array([margin + shape[0] / 2, margin + shape[1] / 2, 0.0, 1.0])
    camera_velocity = np.array([*rng.normal(0, s.camera_speed * side, 2),
                                rng.normal(0, 0.01), rng.normal(0, 0.005)])
    objects = [_new_object(rng, shape, s) for _ in range(int(rng.integers(1, s.max_objects + 1)))]
    annotated = rng.random(len(objects)) >= s.distractor_rate
    annotated[rng.integers(len(objects))] = True
    ids = np.where(annotated, np.cumsum(annotated), 0)
    noise, blur = rng.uniform(*s.noise), rng.uniform(*s.blur)
    gain, offset = rng.uniform(0.7, 1.2), rng.uniform(-0.1, 0.1)
    images = np.empty((frames, *shape, 3), np.uint8)
    labels = np.zeros((frames, *shape), np.int32)
    for t in range(frames):
        if t:
            pose = pose + camera_velocity
            pose[3] = np.clip(pose[3], 0.8, 1.25)
            for obj in objects:
                _move(obj, rng, shape, s.scale_range)
        frame = _camera_view(world, shape, pose)
        for obj, label in zip(objects, ids, strict=True):
            drawn = _render_object(obj, t, shape)
            if drawn is None:
                continue
            window, mask, colour = drawn
            # frame 0 has no motion before it to smear
            _composite_smeared(frame, window, mask, colour,
                               s.motion_blur * obj.velocity if t else np.zeros(2))
            labels[t][window][mask] = label
        if blur > 0.3:
            frame = ndi.gaussian_filter(frame, (blur, blur, 0))
        frame = gain * frame + offset + noise * rng.standard_normal(frame.shape)
        images[t] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return images, labels


def _composite_smeared(frame: np.ndarray, window: tuple[slice, slice], mask: np.ndarray,
                       colour: np.ndarray, smear: np.ndarray) -> None:
    """Paint an object over ``frame`` ``(Y, X, 3)`` smeared along ``smear`` ``(2,)``
    pixels, centred on where it is (a shutter open over that part of its motion):
    its colour and coverage averaged over shifted copies, then blended in; under half a
    pixel (``motion_blur`` 0 among them), painted as it is."""
    length = float(np.hypot(*smear))
    if length < 0.5:
        frame[window][mask] = colour[mask]
        return
    pad = int(np.ceil(length / 2)) + 1
    ys, xs = window
    y0, y1 = max(ys.start - pad, 0), min(ys.stop + pad, frame.shape[0])
    x0, x1 = max(xs.start - pad, 0), min(xs.stop + pad, frame.shape[1])
    layer = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    layer[inner][..., :3] = colour * mask[..., None]
    layer[inner][..., 3] = mask
    steps = int(np.ceil(length)) + 1
    smeared = np.mean([ndi.shift(layer, (*(f * smear), 0), order=1)
                       for f in np.linspace(-0.5, 0.5, steps)], axis=0)
    alpha = smeared[..., 3:]
    region = frame[y0:y1, x0:x1]
    region[:] = region * (1 - alpha) + smeared[..., :3]


def write_davis_videos(out_dir: str | Path, videos: int = 1, frames: int = 10,
                       size: tuple[int, int] = (240, 432), seed: int = 0,
                       settings: VideoSettings | None = None) -> Path:
    """Write ``videos`` synthetic videos ``synth-000`` ... into the DAVIS folder ``out_dir``.

    Video ``i`` uses the seed ``[seed, i]``; ``synth.json`` records the settings.
    JPEG quality is drawn per video (75-95), as real videos differ in compression.
    """
    from PIL import Image

    from instatrack.data.davis import write_annotation

    if not 1 <= videos <= 999:
        raise ConfigError(f"videos must be in 1..999, got {videos}")
    s = settings or VideoSettings()
    out = Path(out_dir)
    names = []
    for index in range(videos):
        name = f"synth-{index:03d}"
        video_seed = int(np.random.default_rng([seed, index]).integers(2**31))
        images, labels = generate_video(frames, size, video_seed, s)
        quality = int(np.random.default_rng(video_seed).integers(75, 96))
        image_dir = out / "JPEGImages" / "480p" / name
        image_dir.mkdir(parents=True, exist_ok=True)
        for t, (image, label) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(image).save(image_dir / f"{t:05d}.jpg", quality=quality)
            write_annotation(out / "Annotations" / "480p" / name / f"{t:05d}.png", label)
        names.append({"video": name, "seed": video_seed, "jpeg_quality": quality})
    record = {"kind": "video", "frames": frames, "size": list(size), "seed": seed,
              "settings": s.to_dict() if hasattr(s, "to_dict") else dataclasses.asdict(s),
              "videos": names}
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return out
