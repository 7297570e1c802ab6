"""Pictures: coloured instance overlays, overlay movies, lineage trees, training curves.

Colours depend on the label value only (a golden-ratio walk around the hue
circle), so a track keeps its colour in every frame and every picture.
Matplotlib (Agg backend) and Pillow are imported inside the functions, so
importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from instatrack.errors import DataError

_GOLDEN = 0.618033988749895
#: movie formats :func:`overlay_movie` writes (MP4 needs the imageio-ffmpeg package)
MOVIE_SUFFIXES = (".gif", ".mp4")
#: picture formats of :func:`lineage_tree` and :func:`training_curves`
PICTURE_SUFFIXES = (".png", ".pdf", ".svg")


def label_colours(ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 RGB colour of each label id in ``ids`` ``(N,)`` (stable per id)."""
    ids = np.asarray(ids, np.int64)
    hue = (ids * _GOLDEN) % 1.0
    saturation = 0.55 + 0.35 * ((ids * 0.37) % 1.0)
    value = np.full(hue.shape, 0.95)
    return (_hsv_to_rgb(hue, saturation, value) * 255).round().astype(np.uint8)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    sector = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]])
    return table[sector, np.arange(len(h))]


def to_rgb(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Raw ``(Y, X)`` or ``(Y, X, C)`` image -> ``(Y, X, 3)`` uint8 for display.

    Grey images are stretched between the ``low`` and ``high`` percentiles;
    uint8 colour images are kept; other colour images are stretched too.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.dtype == np.uint8:
        return image[..., :3].copy()
    if image.ndim == 3:
        image = image[..., :3] if image.shape[-1] >= 3 else image[..., 0]
    if image.ndim not in (2, 3):
        raise DataError(f"cannot display an image of shape {image.shape}")
    values = image.astype(np.float32)
    lo, hi = np.percentile(values, [low, high])
    scaled = np.clip((values - lo) / max(float(hi - lo), 1e-6), 0, 1)
    grey = (scaled * 255).astype(np.uint8)
    return grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)


def label_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45,
                  contours: bool = True) -> np.ndarray:
    """Image with instances tinted by label colour and outlined; ``(Y, X, 3)`` uint8.

    ``image``: raw ``(Y, X)`` or ``(Y, X, C)``; ``labels``: ``(Y, X)`` ints, 0 = none.
    """
    rgb = to_rgb(image)
    labels = np.asarray(labels)
    if labels.shape != rgb.shape[:2]:
        raise DataError(f"labels of shape {labels.shape} do not fit an image of shape "
                        f"{rgb.shape[:2]}")
    ids = np.unique(labels[labels > 0])
    if len(ids) == 0:
        return rgb
    lut = np.zeros((int(ids.max()) + 1, 3), np.uint8)
    lut[ids] = label_colours(ids)
    inside = labels > 0
    colour = lut[np.where(inside, labels, 0)]
    out = rgb.astype(np.float32)
    out[inside] = (1 - alpha) * out[inside] + alpha * colour[inside]
    if contours:
        from skimage.segmentation import find_boundaries

        edge = find_boundaries(labels, mode="inner") & inside
        out[edge] = colour[edge]
    return out.round().astype(np.uint8)


def overlay_movie(frames: Iterable[np.ndarray], labels: Iterable[np.ndarray], graph,
                  path: str | Path, fps: float = 5, min_size: int = 256) -> Path:
    """Movie of frames with coloured instances, contours and track ids at centroids.

    ``frames``: raw images ``(Y, X)`` / ``(Y, X, C)``; ``labels``: ``(Y, X)``
    track-id images of the same frames; both are read one frame at a time.
    ``graph`` (track graph or None) gives the centroids; without it they are
    computed from the labels. Small frames are enlarged (nearest neighbour) to
    at least ``min_size`` pixels so the numbers stay readable. Writes an MP4
    (streaming) when ``path`` ends in ``.mp4``, a GIF when it ends in ``.gif``
    (Pillow keeps the palette frames, one byte per pixel, until the end); any
    other suffix, or ``.mp4`` without imageio-ffmpeg installed, is refused
    before anything is drawn (see :func:`check_movie_path`). Returns ``path``.
    """
    path = check_movie_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centroids = _centroids_by_frame(graph)
    pictures = (_annotated(frame, lab, centroids, t, min_size)
                for t, (frame, lab) in enumerate(zip(frames, labels, strict=True)))
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
            for picture in pictures:
                writer.append_data(picture)
        return path
    _write_gif(pictures, path, fps)
    return path


def check_movie_path(path: str | Path) -> Path:
    """``path`` if :func:`overlay_movie` can write it, else DataError naming it and why."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MOVIE_SUFFIXES:
        raise DataError(f"{path}: unsupported movie type {path.suffix or '(none)'!r}; use "
                        f"{' or '.join(MOVIE_SUFFIXES)}")
    if suffix == ".mp4" and not _has_ffmpeg():
        raise DataError(f"{path}: writing MP4 needs the imageio-ffmpeg package (pip install "
                        f"imageio-ffmpeg); or write a .gif")
    return path


def overlay_movie_from_files(image_paths: Iterable[str | Path],
                             label_paths: Iterable[str | Path], graph, path: str | Path,
                             fps: float = 5) -> Path:
    """:func:`overlay_movie` reading each image and label file only when it is drawn.

    Images are read as the networks read them (:func:`~instatrack.data.io.read_frame`).
    """
    from instatrack.data.io import read_frame, read_image

    frames = (read_frame(p) for p in image_paths)
    labels = (read_image(p) for p in label_paths)
    return overlay_movie(frames, labels, graph, path, fps=fps)


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def _write_gif(pictures: Iterable[np.ndarray], path: Path, fps: float) -> None:
    from PIL import Image

    palette_frames = [Image.fromarray(p).quantize(colors=255, dither=Image.Dither.NONE)
                      for p in pictures]
    if not palette_frames:
        raise DataError(f"{path}: no frames to write")
    palette_frames[0].save(path, save_all=True, append_images=palette_frames[1:],
                           duration=max(int(round(1000 / fps)), 20), loop=0)


def _centroids_by_frame(graph) -> dict[int, list[tuple[int, float, float]]]:
    by_frame: dict[int, list[tuple[int, float, float]]] = {}
    if graph is None:
        return by_frame
    for _, data in graph.nodes(data=True):
        by_frame.setdefault(int(data["t"]), []).append(
            (int(data["label"]), float(data["y"]), float(data["x"])))
    return by_frame


def _annotated(frame: np.ndarray, labels: np.ndarray, centroids: dict, t: int,
               min_size: int) -> np.ndarray:
    """One movie frame: overlay, enlarged, with track ids written at the centroids."""
    from PIL import Image, ImageDraw

    from instatrack.labels import label_stats

    labels = np.asarray(labels)
    picture = label_overlay(frame, labels)
    scale = max(1, math.ceil(min_size / min(picture.shape[:2])))
    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    points = centroids.get(t)
    if points is None:
        points = [(k, y, x) for k, (_, y, x) in label_stats(labels).items()]
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    for label, y, x in points:
        xy = ((x + 0.5) * scale, (y + 0.5) * scale)
        draw.text(xy, str(label), fill=(255, 255, 255), anchor="mm", stroke_width=1,
                  stroke_fill=(0, 0, 0))
    draw.text((4, 4), f"t={t}", fill=(255, 255, 0), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def lineage_tree(graph, path: str | Path, title: str | None = None) -> Path:
    """PNG of the lineage: x = frame, one horizontal line per track, elbows at divisions."""
    from instatrack.track.export import graph_to_ctc_table

    rows = graph_to_ctc_table(graph)
    order = _lineage_order(rows)
    position = {label: i for i, label in enumerate(order)}
    span = {label: (b, e) for label, b, e, _ in rows}
    height = min(max(2.5, 0.18 * len(rows) + 1), 40)
    fig = _figure((8, height))
    ax = fig.subplots()
    ids = np.array([label for label, *_ in rows], np.int64)
    colours = label_colours(ids) / 255.0 if len(ids) else np.zeros((0, 3))
    for (label, begin, end, parent), colour in zip(rows, colours, strict=True):
        y = position[label]
        ax.plot([begin, end + 0.8], [y, y], color=colour, lw=2.5, solid_capstyle="butt")
        if parent in position:
            parent_end = span[parent][1] + 0.8
            ax.plot([parent_end, parent_end, begin], [position[parent], y, y],
                    color="0.35", lw=1)
        if len(rows) <= 80:
            ax.text(begin - 0.2, y, str(label), ha="right", va="center", fontsize=6)
    ax.set_xlabel("frame")
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_title(title or f"{len(rows)} tracks, {sum(1 for r in rows if r[3])} with a parent")
    return _save(fig, path)


def _lineage_order(rows: list[tuple[int, int, int, int]]) -> list[int]:
    """Track ids depth-first from the roots, so daughters sit just below their mother."""
    known = {label for label, *_ in rows}
    children: dict[int, list[int]] = {}
    roots = []
    for label, _, _, parent in sorted(rows, key=lambda r: (r[1], r[0])):
        if parent in known:
            children.setdefault(parent, []).append(label)
        else:
            roots.append(label)
    order: list[int] = []
    stack = roots[::-1]
    while stack:
        label = stack.pop()
        order.append(label)
        stack.extend(children.get(label, [])[::-1])
    return order


def training_curves(rows: list[dict], path: str | Path) -> Path:
    """PNG of the logged values against ``step``, one panel per kind of value.

    Panels: loss and its parts; other logged values on a much larger scale
    (counts such as matched objects, which would flatten the loss curves);
    ``val_*`` measures; learning rate ``lr``; throughput (keys ending in ``_per_s``).

    ``rows``: dicts with an integer ``step`` and numeric values (a row may lack keys).
    """
    series = _series(rows)
    loss_scale = max((abs(v) for v in series.get("loss", ([], [1.0]))[1]), default=1.0)
    group = {k: _curve_group(k, max(abs(v) for v in series[k][1]), loss_scale) for k in series}
    groups = [[k for k in series if group[k] == g] for g in range(5)]
    groups = [g for g in groups if g]
    fig = _figure((7, 2.6 * max(len(groups), 1)))
    axes = fig.subplots(len(groups) or 1, 1, sharex=True, squeeze=False)
    for ax, keys in zip(axes[:, 0], groups, strict=False):
        for key in keys:
            steps, values = series[key]
            ax.plot(steps, values, label=key, marker="." if len(steps) < 30 else None)
        values = [v for k in keys for v in series[k][1]]
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_yscale("log")  # losses and learning rates span decades
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    if not groups:
        axes[0, 0].text(0.5, 0.5, "nothing logged yet", ha="center", va="center")
    axes[-1, 0].set_xlabel("step")
    return _save(fig, path)


def _curve_group(key: str, scale: float, loss_scale: float) -> int:
    if key.startswith("val_"):
        return 2
    if key == "lr":
        return 3
    if key.endswith("_per_s"):
        return 4
    return 1 if scale > 5 * max(loss_scale, 1e-12) else 0


def _series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        if "step" not in row:
            continue
        for key, value in row.items():
            if key == "step" or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                steps, values = series.setdefault(key, ([], []))
                steps.append(float(row["step"]))
                values.append(number)
    return series


def _figure(size: tuple[float, float]):
    """A matplotlib Figure on the Agg canvas, outside pyplot (no global state, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
