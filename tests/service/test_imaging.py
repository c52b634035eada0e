"""Images mean what they show: 16-bit, palette, CMYK, transparent and EXIF-rotated uploads
reach the model as a viewer shows them; what cannot be converted faithfully is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hostile_corpus import chunk, encoded, grey16_png
from PIL import Image, ImageCms

from aex.contract.errors import ImageError, UnsupportedImageError
from aex.contract.imaging import decode_for_model, inspect_image, prepare_image

LIMIT = 1_000_000


def model_view(data: bytes, channels: int = 3, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """The pixels a model sees of ``data``, as an (H, W, C) array."""
    prepared = decode_for_model(data, size, channels, LIMIT)
    return np.asarray(prepared.image).reshape(*size, channels).astype(float)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    info = inspect_image(grey16_png(64, 8), LIMIT)
    assert info.mode == "I;16"
    row = model_view(grey16_png(64, 8), channels=1, size=(8, 64))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)  # a gradient, not a white square
    assert 120 < row.mean() < 135


@pytest.mark.parametrize("value", [0, 257, 30000, 65535])
def test_sixteen_bit_values(value: int) -> None:
    flat = Image.frombytes("I;16B", (4, 4), value.to_bytes(2, "big") * 16)
    prepared = prepare_image(flat, (4, 4), 1)
    assert set(np.asarray(prepared.image).ravel()) == {round(value * 255 / 65535)}


def test_sixteen_bit_transparency_is_white() -> None:
    pixels = model_view(grey16_png(16, 4, transparent=0), channels=1, size=(4, 16))
    assert pixels[0, 0, 0] == 255  # the transparent black column shows the background
    assert pixels[0, 8, 0] < 160


def test_mode_i_out_of_range_is_refused() -> None:
    wide = Image.frombytes("I", (2, 2), np.array([0, 1, 2, 70000], "<i4").tobytes())
    with pytest.raises(ImageError, match="outside 0-65535"):
        prepare_image(wide, (2, 2), 1)


def test_palette_and_transparency() -> None:
    palette = Image.new("P", (8, 8))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (4, 0, 8, 8))
    view = model_view(encoded(palette, "PNG"), size=(8, 8))
    assert tuple(view[0, 0]) == (255, 0, 0) and tuple(view[0, 7]) == (0, 0, 255)
    hidden = model_view(encoded(palette, "PNG", transparency=1), size=(8, 8))
    assert tuple(hidden[0, 7]) == (255, 255, 255)
    clear = Image.new("LA", (8, 8), (0, 0))
    assert model_view(encoded(clear, "PNG"), size=(8, 8)).min() == 255
    half = Image.new("RGBA", (8, 8), (0, 0, 0, 128))
    assert 120 < model_view(encoded(half, "PNG"), size=(8, 8)).mean() < 135


def test_cmyk_jpeg_is_converted() -> None:
    red = encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    view = model_view(red, size=(16, 16))
    assert view[..., 0].mean() > 240 and view[..., 1:].mean() < 15


def test_exif_orientation_is_applied() -> None:
    picture = Image.new("RGB", (40, 20), (255, 0, 0))
    picture.paste((0, 0, 255), (0, 0, 20, 20))  # blue on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the blue half on top
    data = encoded(picture, "JPEG", exif=exif.tobytes(), quality=95)
    prepared = decode_for_model(data, (40, 20), 3, LIMIT)
    assert prepared.original_size == (40, 20) and not prepared.resized
    view = np.asarray(prepared.image).astype(float)
    assert view[:20, :, 2].mean() > 200 and view[20:, :, 0].mean() > 200


def test_colour_profiles() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colour = Image.new("RGB", (8, 8), (200, 100, 50))
    tagged = model_view(encoded(colour, "PNG", icc_profile=srgb), size=(8, 8))
    assert np.abs(tagged - np.array([200, 100, 50])).max() <= 2
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    with pytest.raises(ImageError, match="colour profile is for"):
        inspect_image(encoded(colour, "PNG", icc_profile=lab), LIMIT)
    with pytest.raises(ImageError, match="colour profile cannot be read"):
        inspect_image(encoded(colour, "PNG", icc_profile=b"not a profile" * 20), LIMIT)


def test_modes_that_cannot_be_converted_are_refused() -> None:
    with pytest.raises(UnsupportedImageError, match="colour mode F"):
        prepare_image(Image.new("F", (4, 4)), (4, 4), 3)
    with pytest.raises(UnsupportedImageError, match="colour mode HSV"):
        prepare_image(Image.new("HSV", (4, 4)), (4, 4), 3)


def test_inspection_never_decodes_the_pixels() -> None:
    """A PNG whose pixel data is damaged (its checksums intact) passes the API's check;
    the worker's decode refuses it."""
    good = encoded(Image.new("RGB", (64, 64), (10, 20, 30)), "PNG")
    start = good.index(b"IDAT") - 4
    length = int.from_bytes(good[start:start + 4], "big")
    damaged = good[:start] + chunk(b"IDAT", b"\x00" * length) + good[start + 12 + length:]
    assert inspect_image(damaged, LIMIT).size == (64, 64)
    with pytest.raises(ImageError, match="cannot be decoded"):
        decode_for_model(damaged, (32, 32), 3, LIMIT)
