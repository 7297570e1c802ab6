"""read_image / list_images / write_labels / normalize: values, dtypes and error messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from instatrack.data import list_images, normalize, read_image, write_labels
from instatrack.data.io import image_shape
from instatrack.errors import DataError


def test_read_tiff_png_jpeg_and_palette(tmp_path):
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "a.tif", data[None])
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.uint16 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, data)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (5, 6, 4)
    palette = Image.fromarray(np.array([[0, 1], [2, 7]], np.uint8), "P")
    palette.putpalette([0, 0, 0] + [200, 10, 10] * 255)
    palette.save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").tolist() == [[0, 1], [2, 7]]  # indices, not colours
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "d.jpg")
    assert read_image(tmp_path / "d.jpg").shape == (8, 8, 3)
    assert image_shape(tmp_path / "b.png") == (5, 6, 4)
    assert image_shape(tmp_path / "a.tif") == (3, 4)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.tif: file not found"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "bad.tif").write_bytes(b"\x00garbage bytes, not a TIFF")
    with pytest.raises(DataError, match=r"bad\.tif: cannot read image"):
        read_image(tmp_path / "bad.tif")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"bad\.png: cannot read image"):
        read_image(tmp_path / "bad.png")
    nan = np.ones((4, 4), np.float32)
    nan[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    with pytest.raises(DataError, match=r"nan\.tif: image contains NaN"):
        read_image(tmp_path / "nan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that zero-size TIFFs are nonconformant
        tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 5), np.uint8))
    with pytest.raises(DataError, match=r"empty\.tif"):
        read_image(tmp_path / "empty.tif")


def test_list_images_natural_order_and_errors(tmp_path):
    for name in ("t10.tif", "t2.tif", "t1.png", "notes.txt", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["t1.png", "t2.tif", "t10.tif"]
    with pytest.raises(DataError, match="folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images"):
        list_images(tmp_path / "empty")


def test_write_labels_uint16_and_range_check(tmp_path):
    path = write_labels(tmp_path / "sub" / "m.tif", np.array([[0, 1], [65535, 2]], np.int64))
    stored = tifffile.imread(path)
    assert stored.dtype == np.uint16 and stored.tolist() == [[0, 1], [65535, 2]]
    with pytest.raises(DataError, match=r"m2\.tif: labels must lie in 0\.\.65535"):
        write_labels(tmp_path / "m2.tif", np.array([[-1, 0]]))
    with pytest.raises(DataError, match="integers"):
        write_labels(tmp_path / "m3.tif", np.zeros((2, 2), np.float32))


def test_normalize_hand_computed():
    image = np.arange(101, dtype=np.uint16).reshape(1, 101)  # percentile p is value p
    out = normalize(image, low=10.0, high=90.0)
    assert out.shape == (1, 1, 101) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, [10, 50, 90, 100]], [0.0, 0.5, 1.0, 1.125], atol=1e-6)


def test_normalize_channels_constant_and_nan():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = np.arange(5)
    rgb[..., 2] = 200  # constant channel: no division by zero
    out = normalize(rgb, 0.0, 100.0)
    assert out.shape == (3, 4, 5)
    assert np.all(out[0] == 0) and np.all(out[2] == 0)
    np.testing.assert_allclose(out[1, 0], [0, 0.25, 0.5, 0.75, 1.0])
    bad = np.ones((3, 3))
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="frame7: image contains NaN"):
        normalize(bad, name="frame7")
    with pytest.raises(DataError, match="shape"):
        normalize(np.zeros((2, 3, 4, 5)))


def _nucleus_frame(contrast: float, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """uint16 frame: background 100, a 40 px square ``contrast`` above it, Gaussian noise."""
    rng = np.random.default_rng(seed)
    frame = np.full((128, 128), 100.0)
    frame[40:80, 40:80] += contrast
    return np.clip(np.round(frame + rng.normal(0, noise, frame.shape)), 0, None).astype(np.uint16)


def test_noise_mode_keeps_noise_one_size_and_a_dim_frame_dim():
    from instatrack.data.normalize import NOISE_UNITS, noise_std

    assert noise_std(_nucleus_frame(60.0).astype(np.float32)) == pytest.approx(4.0, rel=0.1)
    clean = normalize(_nucleus_frame(60.0), mode="noise")[0]
    dim = normalize(_nucleus_frame(60.0 / 8, seed=1), mode="noise")[0]
    for out in (clean, dim):  # the background's noise: 1 / NOISE_UNITS in both frames
        assert out[:30, :30].std() == pytest.approx(1 / NOISE_UNITS, rel=0.15)
    step = lambda out: out[45:75, 45:75].mean() - out[:30, :30].mean()  # noqa: E731
    assert step(dim) == pytest.approx(step(clean) / 8, rel=0.15)
    # the percentile stretch instead brings the dim square up near the clean one's level
    stretched = normalize(_nucleus_frame(60.0 / 8, seed=1))[0]
    assert step(stretched) > 0.3 and step(dim) < 0.1


def test_noise_mode_without_noise_and_bad_mode():
    flat = np.zeros((64, 64), np.uint8)
    flat[20:40, 20:40] = 200
    out = normalize(flat, mode="noise")
    assert np.isfinite(out).all() and out.max() <= 4.0 + 1e-6
    with pytest.raises(DataError, match="frame3: normalisation mode must be one of"):
        normalize(flat, name="frame3", mode="zscore")


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_noise_mode_ranges_of_the_whole_image_match_normalize(dtype):
    from instatrack.data.normalize import input_ranges, normalize_crop

    image = _nucleus_frame(30.0).astype(dtype)
    whole = normalize(image, mode="noise")
    ranges = input_ranges(image, mode="noise")
    assert np.allclose(normalize_crop(image[10:70, 5:90], ranges), whole[:, 10:70, 5:90],
                       atol=1e-6)
