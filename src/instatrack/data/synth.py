"""Synthetic data with exact ground truth: fluorescent cell movies and leaf images.

:func:`generate_cells` simulates nuclei that move (persistent random walk plus a
common drift), deform, touch, divide and cross the border of the field of view,
and renders them like a widefield fluorescence movie (texture, blur, uneven
background, Poisson and Gaussian noise). The labels are rasterised from the
same shapes, so they are exact; the lineage follows the Cell Tracking Challenge
rules (a track is contiguous in time, a daughter starts the frame after its
mother ends). :func:`write_ctc_synthetic` writes it in the CTC layout.

:func:`generate_leaves` draws rosettes of overlapping leaf-like ellipses and
:func:`write_cvppp_synthetic` writes them in the CVPPP A1 layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.synth_appearance import (
    ARM_SLOTS,
    ASPECT_HEADROOM,
    SHAPE_CEILING,
    Appearance,
    arm_fade,
    camera,
    illumination,
    nucleus_intensity,
)
from instatrack.data.types import check_index
from instatrack.errors import ConfigError

#: harmonics of the cell outline ``r(phi) = 1 + sum_k c_k cos(k phi + p_k)``, k = 2, 3, 4
_HARMONICS = 3
#: pixels of world around the field of view, so cells can enter and leave it
_MARGIN_RADII = 3.0


@dataclasses.dataclass
class SynthSequence:
    """A synthetic movie with exact ground truth.

    ``images`` ``(T, Y, X)`` uint16; ``labels`` ``(T, Y, X)`` int32 with
    label = track id (0 = background); ``lineage`` rows ``(L, B, E, P)`` as in
    CTC ``man_track.txt`` (label, first frame, last frame, parent label or 0).
    """

    images: np.ndarray
    labels: np.ndarray
    lineage: list[tuple[int, int, int, int]]


class MovieSequence:
    """A :class:`SynthSequence` held in memory as a training
    :class:`~instatrack.data.types.Sequence` (what reading it back from
    :func:`write_ctc_sequence`'s folder gives, without the folder)."""

    is_video = True
    channels = 1

    def __init__(self, name: str, movie: SynthSequence):
        self.name, self.movie = name, movie

    def __len__(self) -> int:
        return len(self.movie.images)

    def image(self, t: int) -> np.ndarray:
        return self.movie.images[check_index(self, t)]

    def labels(self, t: int) -> np.ndarray:
        return self.movie.labels[check_index(self, t)]

    def frame_path(self, t: int) -> Path:
        return Path(f"<{self.name}>") / f"t{check_index(self, t):03d}"


@dataclasses.dataclass
class SynthImages:
    """Synthetic still images: ``images`` ``(N, Y, X, 3)`` uint8, ``labels`` ``(N, Y, X)`` int32."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass
class _Cells:
    """State of every simulated cell, one row per cell (world coordinates)."""

    pos: np.ndarray        # (N, 2) centre y, x
    vel: np.ndarray        # (N, 2)
    radius: np.ndarray     # (N,) mean radius
    aspect: np.ndarray     # (N,) major / minor axis
    angle: np.ndarray      # (N,) orientation of the major axis
    shape: np.ndarray      # (N, H) harmonic amplitudes
    phase: np.ndarray      # (N, H) harmonic phases
    arm: np.ndarray        # (N, A) length of each arm in radii (0: none), spread cells
    arm_dir: np.ndarray    # (N, A) its direction (outline angle)
    arm_width: np.ndarray  # (N, A) its angular half-width (radians)
    bright: np.ndarray     # (N,)
    texture: np.ndarray    # (N, 3, 3) wave vector y, x and phase of three texture waves
    age: np.ndarray        # (N,) frames since birth
    ident: np.ndarray      # (N,) unique simulation id
    parent: np.ndarray     # (N,) simulation id of the mother, -1 for none

    def __len__(self) -> int:
        return len(self.pos)

    def take(self, keep: np.ndarray) -> _Cells:
        return _Cells(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    @staticmethod
    def concat(a: _Cells, b: _Cells) -> _Cells:
        return _Cells(**{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])
                         for f in dataclasses.fields(a)})


@dataclasses.dataclass
class _Knobs:
    density: float
    noise: float
    division_rate: float
    radius: tuple[float, float]
    speed: float
    min_area: int
    look: Appearance


def generate_cells(frames: int = 20, size: tuple[int, int] = (128, 128), seed: int = 0,
                   density: float = 8.0, noise: float = 0.1, division_rate: float = 0.03,
                   radius: tuple[float, float] = (5.0, 8.0), speed: float = 1.0,
                   min_area: int = 12, dim_phases: Sequence[Phase] = (),
                   dense_phases: Sequence[Phase] = (),
                   appearance: Appearance | None = None,
                   outline: str = "object") -> SynthSequence:
    """Simulate a fluorescence movie of moving, dividing nuclei.

    ``density``: cells per 100 x 100 pixels; ``noise``: relative noise level
    (0 = clean, 0.3 = hard); ``division_rate``: probability per cell and frame;
    ``radius``: range of mean cell radii in pixels; ``speed``: pixels per frame
    of the random walk; ``min_area``: objects with fewer visible pixels (clipped
    at the border or squeezed) are left out of the ground truth.
    ``dim_phases``: ``(start, stop, factor)`` frame ranges whose fluorescence is
    divided by ``factor`` before the camera (the noise floor stays, so the
    nuclei sink towards it); ``dense_phases``: ranges where the number of cells
    aimed at is multiplied by ``factor`` (cells enter and divide to reach it).
    ``appearance``: shapes, texture, contrast, illumination and blur
    (:class:`~instatrack.data.synth_appearance.Appearance`; default: its defaults).
    ``outline``: where a nucleus's ground truth ends: ``"object"``, its drawn outline;
    ``"visible"``, grown to where its blurred light fades into the background, the
    edge an annotator sees (:func:`visible_outlines`).
    The result depends only on the arguments.
    """
    _check_knobs(frames, size, density, noise, division_rate, radius, speed, min_area)
    if outline not in OUTLINES:
        raise ConfigError(f"outline must be one of {', '.join(OUTLINES)}, got {outline!r}")
    contrast = 1.0 / phase_schedule(dim_phases, frames, "dim_phases")
    crowding = phase_schedule(dense_phases, frames, "dense_phases")
    rng = np.random.default_rng(seed)
    look = appearance if appearance is not None else Appearance()
    knobs = _Knobs(density, noise, division_rate, (float(radius[0]), float(radius[1])),
                   speed, min_area, look)
    margin = int(np.ceil(_MARGIN_RADII * knobs.radius[1]))
    world = (size[0] + 2 * margin, size[1] + 2 * margin)
    target = max(1, round(density * world[0] * world[1] / 1e4))
    drift = rng.normal(0.0, 0.3 * speed, 2)
    background = illumination(size, rng, look)
    cells = _new_cells(rng, target, world, knobs, np.arange(target), np.full(target, -1))
    cells = _relax(cells, 10)
    next_id = target
    images = np.empty((frames, *size), np.uint16)
    labels = np.zeros((frames, *size), np.int32)
    tracker = _TrackBook()
    clutter = _Clutter(seed, target, world, knobs) if look.ghosts or look.specks else None
    for t in range(frames):
        labels[t], signal = _render(cells, size, margin, min_area, look)
        if outline == "visible":
            labels[t] = visible_outlines(labels[t], signal, look.blur)
        tracker.update(t, labels[t], cells)
        labels[t] = tracker.relabel(labels[t])
        if clutter is not None:  # light without ground truth, after the labels
            signal = signal + clutter.light(size, margin)
        images[t] = camera(signal * (look.contrast * contrast[t]) + background, noise, rng, look)
        if t + 1 < frames:
            if clutter is not None:
                clutter.step(world, drift)
            aim = max(1, round(target * crowding[t + 1]))
            # a crowding phase fills up by divisions (and cells entering at the edges)
            busy = knobs if crowding[t + 1] <= 1 else dataclasses.replace(
                knobs, division_rate=min(0.3, 4 * knobs.division_rate + 0.02))
            cells, next_id = _step(cells, rng, world, busy, drift, aim, next_id)
    return SynthSequence(images, labels, tracker.lineage())


#: where a synthetic nucleus's ground truth ends (``outline`` of :func:`generate_cells`)
OUTLINES = ("object", "visible")
#: ``outline="visible"``: the share of a nucleus's blurred peak where its mask ends. The
#: annotated masks of SIM+ 01 and GOWT1 01 cover 0.88 / 0.91 (medians) of the pixels
#: brighter than half their nucleus's median light over the background; at this level
#: the blurriest randomised synthetic looks give 0.88-0.92 (drawn outlines: 1.5)
VISIBLE_LEVEL = 0.25

#: ``(first frame, stop frame, factor)`` of a dim or dense phase
Phase = tuple[int, int, float]


def phase_schedule(phases: Sequence[Phase], frames: int, name: str = "phases") -> np.ndarray:
    """Per-frame factor ``(frames,)``: 1 outside the phases, the phase's factor inside."""
    factors = np.ones(frames)
    for phase in phases:
        if len(phase) != 3:
            raise ConfigError(f"{name}: expected (start, stop, factor), got {phase!r}")
        start, stop, factor = phase
        if not (0 <= start < stop and factor > 0):
            raise ConfigError(f"{name}: need 0 <= start < stop and factor > 0, got {phase!r}")
        factors[int(start):int(stop)] = float(factor)
    return factors


def parse_phase(text: str, name: str = "phase") -> Phase:
    """``"START:STOP:FACTOR"`` -> ``(start, stop, factor)``."""
    parts = text.split(":")
    try:
        start, stop, factor = int(parts[0]), int(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        raise ConfigError(f"{name} must look like START:STOP:FACTOR, got {text!r}") from None
    phase = (start, stop, factor)
    phase_schedule([phase], stop, name)
    return phase


def _check_knobs(frames: int, size: tuple[int, int], density: float, noise: float,
                 division_rate: float, radius: tuple[float, float], speed: float,
                 min_area: int) -> None:
    """Raise :class:`ConfigError` naming the first knob out of range."""
    checks = [
        (frames >= 1, f"frames must be >= 1, got {frames}"),
        (len(size) == 2 and min(size) >= 8, f"size must be two values >= 8, got {size}"),
        (density >= 0, f"density must be >= 0, got {density}"),
        (noise >= 0, f"noise must be >= 0, got {noise}"),
        (0 <= division_rate <= 1, f"division_rate must be in [0, 1], got {division_rate}"),
        (len(radius) == 2 and 1 <= radius[0] <= radius[1],
         f"radius must be (min, max) with 1 <= min <= max, got {radius}"),
        (speed >= 0, f"speed must be >= 0, got {speed}"),
        (min_area >= 1, f"min_area must be >= 1, got {min_area}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


# -- simulation ---------------------------------------------------------------------------------
def _new_cells(rng: np.random.Generator, n: int, world: tuple[int, int], knobs: _Knobs,
               ident: np.ndarray, parent: np.ndarray, pos: np.ndarray | None = None) -> _Cells:
    if pos is None:
        pos = rng.uniform((0, 0), world, (n, 2))
    return _Cells(
        pos=pos.astype(float),
        vel=rng.normal(0.0, knobs.speed, (n, 2)),
        radius=rng.uniform(*knobs.radius, n),
        aspect=rng.uniform(1.0, knobs.look.aspect_max, n),
        angle=rng.uniform(0, np.pi, n),
        shape=rng.uniform(0.0, knobs.look.irregularity, (n, _HARMONICS)),
        phase=rng.uniform(0, 2 * np.pi, (n, _HARMONICS)),
        bright=rng.uniform(knobs.look.bright_min, 1.0, n),
        texture=np.concatenate([rng.normal(0, knobs.look.texture_scale, (n, 2, 3)),
                                rng.uniform(0, 2 * np.pi, (n, 1, 3))], axis=1),
        age=rng.integers(0, 20, n),
        ident=np.asarray(ident, np.int64),
        parent=np.asarray(parent, np.int64),
        **_new_arms(rng, n, knobs.look),
    )


def _new_arms(rng: np.random.Generator, n: int, look: Appearance) -> dict[str, np.ndarray]:
    """Arms of ``n`` new spread cells; none (and no draw, so the movie of a look without
    arms is what it always was) when ``look.arms`` is 0."""
    if look.arms <= 0:
        return {name: np.zeros((n, ARM_SLOTS)) for name in ("arm", "arm_dir", "arm_width")}
    present = rng.random((n, ARM_SLOTS)) < look.arms / ARM_SLOTS
    return {"arm": present * rng.uniform(0.3, 1.0, (n, ARM_SLOTS)) * look.arm_length,
            "arm_dir": rng.uniform(0, 2 * np.pi, (n, ARM_SLOTS)),
            "arm_width": rng.uniform(0.3, 1.0, (n, ARM_SLOTS)) * look.arm_width}


def _step(cells: _Cells, rng: np.random.Generator, world: tuple[int, int], knobs: _Knobs,
          drift: np.ndarray, target: int, next_id: int) -> tuple[_Cells, int]:
    """Advance one frame: move, deform, divide, leave the world, enter it."""
    n = len(cells)
    cells.vel = 0.7 * cells.vel + rng.normal(0.0, 0.6 * knobs.speed, (n, 2))
    cells.pos = cells.pos + cells.vel + drift
    cells.angle = cells.angle + rng.normal(0.0, 0.08, n)
    look = knobs.look
    cells.aspect = np.clip(cells.aspect + rng.normal(0.0, 0.04, n), 1.0,
                           look.aspect_max + ASPECT_HEADROOM)
    cells.shape = np.clip(0.9 * cells.shape + rng.normal(0.0, 0.015, cells.shape.shape), 0,
                          look.irregularity * SHAPE_CEILING)
    cells.phase = cells.phase + rng.normal(0.0, 0.1, cells.phase.shape)
    if look.arms > 0:  # arms grow, shrink and swing a little (none are born mid-life)
        has = cells.arm > 0
        cells.arm = np.where(has, np.clip(cells.arm + rng.normal(0.0, 0.04, has.shape), 0.05,
                                          look.arm_length * 1.2), 0.0)
        cells.arm_dir = cells.arm_dir + rng.normal(0.0, 0.05, has.shape)
    cells.radius = np.minimum(cells.radius * 1.01, knobs.radius[1] * 1.2)
    cells.age = cells.age + 1
    inside = np.all((cells.pos >= 0) & (cells.pos < world), axis=1)
    cells = cells.take(inside)
    if len(cells) < 1.3 * target:
        cells, next_id = _divide(cells, rng, knobs, next_id)
    missing = target - len(cells)
    if missing > 0:
        born = rng.poisson(min(missing, 0.05 * target + 0.5))
        if born:
            ids = np.arange(next_id, next_id + born)
            new = _new_cells(rng, born, world, knobs, ids, np.full(born, -1), _edge_positions(
                rng, born, world, knobs.radius[1]))
            cells, next_id = _Cells.concat(cells, new), next_id + born
    return _relax(cells, 3), next_id


def _edge_positions(rng: np.random.Generator, n: int, world: tuple[int, int],
                    band: float) -> np.ndarray:
    """Random points in the outer band of the world, outside the field of view."""
    pos = rng.uniform((0, 0), world, (n, 2))
    side = rng.integers(0, 4, n)
    axis, high = side // 2, side % 2
    rows = np.arange(n)
    extent = np.asarray(world, float)[axis]
    offset = rng.uniform(0, band, n)
    pos[rows, axis] = np.where(high == 1, extent - 1 - offset, offset)
    return pos


def _divide(cells: _Cells, rng: np.random.Generator, knobs: _Knobs,
            next_id: int) -> tuple[_Cells, int]:
    """Replace dividing mothers by two daughters side by side inside the mother's footprint."""
    divides = (cells.age > 6) & (rng.random(len(cells)) < knobs.division_rate)
    if not divides.any():
        return cells, next_id
    mothers = cells.take(divides)
    m = len(mothers)
    radius = mothers.radius / np.sqrt(2)
    axis = np.stack([np.sin(mothers.angle), np.cos(mothers.angle)], axis=1)
    offset = (0.6 * radius)[:, None] * axis
    daughters = []
    for sign in (-1.0, 1.0):
        ids = np.arange(next_id, next_id + m)
        next_id += m
        d = _new_cells(rng, m, (1, 1), knobs, ids, mothers.ident, mothers.pos + sign * offset)
        d.radius = radius * rng.uniform(0.95, 1.05, m)
        d.angle = mothers.angle + np.pi / 2
        d.bright = np.minimum(mothers.bright * 1.1, 1.0)
        d.vel = sign * 0.5 * axis
        d.age = np.zeros(m, np.int64)
        daughters.append(d)
    cells = _Cells.concat(cells.take(~divides), _Cells.concat(*daughters))
    return cells, next_id


def _relax(cells: _Cells, iterations: int) -> _Cells:
    """Push overlapping cells apart so they may touch but never hide each other."""
    for _ in range(iterations):
        if len(cells) < 2:
            break
        delta = cells.pos[:, None, :] - cells.pos[None, :, :]
        dist = np.sqrt((delta ** 2).sum(-1)) + np.eye(len(cells))
        wanted = 0.85 * (cells.radius[:, None] + cells.radius[None, :])
        push = np.clip(wanted - dist, 0, None) / dist * 0.25
        np.fill_diagonal(push, 0.0)
        cells.pos = cells.pos + (push[..., None] * delta).sum(1)
    return cells


class _Clutter:
    """Light that the ground truth leaves out (:attr:`Appearance.ghosts`, ``.specks``):
    out-of-focus cells of another plane, faint and blurred, that wander like the cells in
    focus, and small bright debris that stays put. Drawn from a random stream of its
    own, so the cells in focus, their labels and the camera noise are those of the same
    movie without clutter."""

    #: a ghost's light is this range of a cell's in focus (by its id, so it keeps it),
    #: scaled so that its top is Appearance.ghost_light (by default this top)
    DIM = (0.12, 0.4)
    #: its blur, in radii of the movie's mean cell
    BLUR_RADII = 0.35

    def __init__(self, seed: int, target: int, world: tuple[int, int], knobs: _Knobs):
        self.rng = np.random.default_rng([seed, 7])
        plain = dataclasses.replace(knobs.look, arms=0.0, ghosts=0.0, specks=0.0)
        self.knobs = dataclasses.replace(knobs, division_rate=0.0, min_area=1, look=plain)
        self.target = int(self.rng.poisson(knobs.look.ghosts * target))
        n = self.target
        self.ghosts = _relax(_new_cells(self.rng, n, world, self.knobs, np.arange(n),
                                        np.full(n, -1)), 10)
        self.next_id = n
        area = (world[0] * world[1]) / 1e4
        m = int(self.rng.poisson(knobs.look.specks * area))
        self.speck_pos = self.rng.uniform((0, 0), world, (m, 2))
        self.speck_radius = self.rng.uniform(0.8, 2.0, m)
        self.speck_bright = self.rng.uniform(1.0, 3.0, m)

    def light(self, size: tuple[int, int], margin: int) -> np.ndarray:
        """The clutter's noise-free fluorescence ``(Y, X)`` in the field of view."""
        light = np.zeros(size)
        if len(self.ghosts):
            owner, ghosts = _render(self.ghosts, size, margin, 1, self.knobs.look)
            # a fixed dimness per ghost, by its id's golden-ratio fraction within DIM
            scale = self.knobs.look.ghost_light / self.DIM[1]  # the look keeps ghost_light
            low, high = self.DIM[0] * scale, self.DIM[1] * scale
            dim = low + (high - low) * ((self.ghosts.ident * 0.618034) % 1.0)
            dimness = np.where(owner > 0, dim[np.maximum(owner - 1, 0)], 0.0)
            light += ndi.gaussian_filter(ghosts * dimness,
                                         self.BLUR_RADII * float(np.mean(self.knobs.radius)))
        for (y, x), radius, bright in zip(self.speck_pos - margin, self.speck_radius,
                                          self.speck_bright, strict=True):
            reach = int(3 * radius) + 1
            y0, y1 = max(int(y) - reach, 0), min(int(y) + reach + 1, size[0])
            x0, x1 = max(int(x) - reach, 0), min(int(x) + reach + 1, size[1])
            if y0 < y1 and x0 < x1:
                yy, xx = np.mgrid[y0:y1, x0:x1]
                light[y0:y1, x0:x1] += bright * np.exp(
                    -((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius ** 2))
        return light

    def step(self, world: tuple[int, int], drift: np.ndarray) -> None:
        """Move the ghosts one frame (they neither divide nor grow in number)."""
        if self.target:
            self.ghosts, self.next_id = _step(self.ghosts, self.rng, world, self.knobs, drift,
                                              self.target, self.next_id)


# -- rendering ----------------------------------------------------------------------------------
def _render(cells: _Cells, size: tuple[int, int], margin: int, min_area: int,
            look: Appearance) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise cells into the field of view.

    Returns labels ``(Y, X)`` int32 holding ``1 + row index`` of the cell that
    owns each pixel (the one whose outline is relatively farthest; a partition)
    and the noise-free fluorescence ``(Y, X)`` float.
    """
    labels = np.zeros(size, np.int32)
    depth = np.full(size, np.inf)
    signal = np.zeros(size)
    reach = cells.radius * np.sqrt(cells.aspect) * (1 + cells.shape.sum(1)
                                                    + cells.arm.max(1)) + 2
    for i in range(len(cells)):
        cy, cx = cells.pos[i] - margin
        y0, y1 = max(int(cy - reach[i]), 0), min(int(cy + reach[i]) + 2, size[0])
        x0, x1 = max(int(cx - reach[i]), 0), min(int(cx + reach[i]) + 2, size[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rel, beyond = _relative_radius(cells, i, yy - cy, xx - cx)
        inside = rel < 1.0
        window = (slice(y0, y1), slice(x0, x1))
        win = inside & (rel < depth[window])
        labels[window][win] = i + 1
        depth[window][win] = rel[win]
        shade = nucleus_intensity(cells.bright[i], cells.texture[i], yy - cy, xx - cx, rel, look)
        if beyond is not None:
            shade = shade * arm_fade(beyond)
        signal[window] += np.where(inside, shade, 0.0)
    areas = np.bincount(labels.ravel(), minlength=len(cells) + 1)
    labels[areas[labels] < min_area] = 0
    return labels, signal


def visible_outlines(labels: np.ndarray, signal: np.ndarray, blur: float) -> np.ndarray:
    """``labels`` grown to the edge an annotator sees: each background pixel within
    ``3 blur`` of an object joins the nearest one where the blurred ``signal`` (light
    over the background) is at least :data:`VISIBLE_LEVEL` of that object's blurred peak.

    A small nucleus blurred by optics of about its radius looks half as wide again as
    its drawn outline; on real images annotators draw the visible edge. Objects are
    only grown (never shrunk), and a large sharp nucleus keeps its outline (a straight
    edge blurs to half height where it was)."""
    if blur <= 0 or not (labels > 0).any():
        return labels
    seen = ndi.gaussian_filter(signal, blur)
    peak = np.zeros(int(labels.max()) + 1)
    ids = np.unique(labels[labels > 0])
    peak[ids] = ndi.maximum(seen, labels, ids)
    distance, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[iy, ix]
    grow = (labels == 0) & (distance <= 3 * blur) & (seen >= VISIBLE_LEVEL * peak[nearest])
    return np.where(grow, nearest, labels).astype(labels.dtype)


def _relative_radius(cells: _Cells, i: int, dy: np.ndarray,
                     dx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance from the centre divided by the outline radius in that direction (< 1
    inside), and for a cell with arms how many radii a pixel lies past its body (None
    without arms). An arm is a Gaussian bump of the outline around its direction."""
    c, s = np.cos(cells.angle[i]), np.sin(cells.angle[i])
    major = dy * s + dx * c
    minor = -dy * c + dx * s
    semi = cells.radius[i] * np.sqrt(cells.aspect[i]), cells.radius[i] / np.sqrt(cells.aspect[i])
    phi = np.arctan2(minor / semi[1], major / semi[0])
    outline = 1.0 + sum(cells.shape[i, k] * np.cos((k + 2) * phi + cells.phase[i, k])
                        for k in range(_HARMONICS))
    distance = np.hypot(major / semi[0], minor / semi[1])
    arms = np.flatnonzero(cells.arm[i] > 0)
    if not arms.size:
        return distance / outline, None
    bumps = sum(cells.arm[i, a] * np.exp(-0.5 * (np.angle(np.exp(1j * (
        phi - cells.arm_dir[i, a]))) / cells.arm_width[i, a]) ** 2) for a in arms)
    return distance / (outline + bumps), distance / outline - 1.0


# -- ground-truth bookkeeping -------------------------------------------------------------------
class _TrackBook:
    """Gives every visible stretch of a cell a track label and records the lineage.

    A cell that becomes invisible ends its track; if it becomes visible again it
    gets a new label, so tracks are contiguous in time. A daughter keeps its
    mother as parent only when she appears the frame right after the mother's
    last frame.
    """

    def __init__(self) -> None:
        self.current: dict[int, int] = {}       # simulation id -> label while visible
        self.rows: dict[int, list[int]] = {}    # label -> [B, E, P]
        self.last_label: dict[int, tuple[int, int]] = {}  # simulation id -> (label, last frame)
        self.map = np.zeros(1, np.int32)

    def update(self, t: int, rows: np.ndarray, cells: _Cells) -> None:
        visible = set(np.unique(rows[rows > 0]).tolist())
        self.map = np.zeros(len(cells) + 1, np.int32)
        still: dict[int, int] = {}
        for row in sorted(visible):
            ident = int(cells.ident[row - 1])
            label = self.current.get(ident)
            if label is None:
                label = len(self.rows) + 1
                self.rows[label] = [t, t, self._parent(int(cells.parent[row - 1]), t)]
            self.rows[label][1] = t
            self.last_label[ident] = (label, t)
            still[ident] = label
            self.map[row] = label
        self.current = still

    def _parent(self, mother: int, t: int) -> int:
        label, last = self.last_label.get(mother, (0, -2))
        return label if last == t - 1 else 0

    def relabel(self, rows: np.ndarray) -> np.ndarray:
        return self.map[rows]

    def lineage(self) -> list[tuple[int, int, int, int]]:
        return [(label, b, e, p) for label, (b, e, p) in sorted(self.rows.items())]


# -- leaves -------------------------------------------------------------------------------------
def generate_leaves(n: int = 8, size: tuple[int, int] = (128, 128), seed: int = 0,
                    leaves: tuple[int, int] = (6, 14)) -> SynthImages:
    """``n`` top views of rosettes: overlapping leaf-like ellipses radiating from a centre.

    Later (inner, younger) leaves lie on top, so the labels are a partition;
    a leaf hidden almost completely is dropped and labels are ``1..K``.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, *size, 3), np.uint8)
    labels = np.empty((n, *size), np.int32)
    for i in range(n):
        images[i], labels[i] = _rosette(size, int(rng.integers(leaves[0], leaves[1] + 1)), rng)
    return SynthImages(images, labels)


def _rosette(size: tuple[int, int], count: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(float)
    centre = np.asarray(size, float) / 2 + rng.normal(0, 0.05 * min(size), 2)
    reach = 0.42 * min(size)
    labels = np.zeros(size, np.int32)
    shade = np.zeros(size)
    golden = np.pi * (3 - np.sqrt(5))
    start = rng.uniform(0, 2 * np.pi)
    for k in range(count):
        # older leaves (drawn first) are longer; the golden angle spreads them like a rosette
        length = reach * (1.0 - 0.5 * k / count) * rng.uniform(0.8, 1.0)
        width = length * rng.uniform(0.25, 0.4)
        theta = start + k * golden + rng.normal(0, 0.15)
        direction = np.array([np.sin(theta), np.cos(theta)])
        mid = centre + direction * length * 0.55
        along = (yy - mid[0]) * direction[0] + (xx - mid[1]) * direction[1]
        across = -(yy - mid[0]) * direction[1] + (xx - mid[1]) * direction[0]
        rel = np.hypot(along / (0.5 * length), across / (0.5 * width))
        inside = rel < 1.0
        labels[inside] = k + 1
        shade[inside] = (1.0 - 0.45 * rel[inside] ** 2) * rng.uniform(0.75, 1.0)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    labels[areas[labels] < 15] = 0
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(size).astype(np.int32)
    return _leaf_colours(labels, shade, rng), labels


def _leaf_colours(labels: np.ndarray, shade: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Green leaves with darker rims on brown, noisy soil; ``(Y, X, 3)`` uint8."""
    soil = np.array([0.35, 0.27, 0.2]) + rng.normal(0, 0.04, (*labels.shape, 3))
    soil = ndi.gaussian_filter(soil, (1.5, 1.5, 0))
    green = np.array([0.25, 0.6, 0.15])
    leaf = green[None, None, :] * (0.35 + 0.75 * shade[..., None])
    rgb = np.where((labels > 0)[..., None], leaf, soil)
    rgb = ndi.gaussian_filter(rgb, (0.7, 0.7, 0)) + rng.normal(0, 0.02, rgb.shape)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


# -- writers ------------------------------------------------------------------------------------
def write_ctc_synthetic(out_dir: str | Path, frames: int = 20, size: tuple[int, int] = (128, 128),
                        seed: int = 0, **knobs) -> Path:
    """Write :func:`generate_cells` output in the Cell Tracking Challenge layout.

    ``out_dir/01/tTTT.tif``, ``out_dir/01_GT/SEG/man_segTTT.tif`` (every frame),
    ``out_dir/01_GT/TRA/man_trackTTT.tif`` and ``man_track.txt``. Returns ``out_dir``.
    """
    write_ctc_sequence(out_dir, generate_cells(frames, size, seed, **knobs))
    return Path(out_dir)


def write_ctc_sequence(out_dir: str | Path, seq: SynthSequence, name: str = "01") -> None:
    """Write ``seq`` as sequence ``name`` (``NN`` and ``NN_GT``) of the CTC dataset ``out_dir``."""
    import tifffile

    from instatrack.data import ctc

    out = Path(out_dir)
    frames = len(seq.images)
    digits = ctc.frame_digits(frames - 1)
    raw, seg, tra = out / name, out / f"{name}_GT" / "SEG", out / f"{name}_GT" / "TRA"
    for folder in (raw, seg, tra):
        folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        tifffile.imwrite(raw / ctc.file_name(ctc.FRAME_PREFIX, t, digits), seq.images[t],
                         compression="zlib")
        mask = seq.labels[t].astype(np.uint16)
        tifffile.imwrite(seg / ctc.file_name(ctc.SEG_PREFIX, t, digits), mask,
                         compression="zlib")
        tifffile.imwrite(tra / ctc.file_name(ctc.TRA_PREFIX, t, digits), mask,
                         compression="zlib")
    ctc.write_track_table(tra / ctc.GT_TRACK_FILE, seq.lineage)


def write_cvppp_synthetic(out_dir: str | Path, n: int = 8, size: tuple[int, int] = (128, 128),
                          seed: int = 0) -> Path:
    """Write :func:`generate_leaves` output as ``out_dir/A1/plantNNN_rgb.png`` + ``_label.png``.

    Labels are palette ("P" mode) PNGs whose indices are the leaf ids. Returns ``out_dir``.
    """
    from PIL import Image

    data = generate_leaves(n, size, seed)
    folder = Path(out_dir) / "A1"
    folder.mkdir(parents=True, exist_ok=True)
    palette = _label_palette()
    for i in range(n):
        stem = folder / f"plant{i + 1:03d}"
        Image.fromarray(data.images[i], "RGB").save(f"{stem}_rgb.png")
        label = Image.fromarray(data.labels[i].astype(np.uint8), "P")
        label.putpalette(palette)
        label.save(f"{stem}_label.png")
    return Path(out_dir)


def _label_palette() -> list[int]:
    """256 distinct RGB colours, black for the background."""
    rng = np.random.default_rng(1)
    colours = rng.integers(40, 256, (256, 3))
    colours[0] = 0
    return colours.astype(np.uint8).ravel().tolist()
