"""Safe image decoding, shared by the API (validation) and the workers (model input).

Only PNG, JPEG and WebP are opened. :func:`inspect_image` is the API's check: it reads the
header, the metadata and (for PNG) the chunk checksums, never the pixels, so checking an
upload costs memory in proportion to its bytes, not to its pixel count. The pixels are
decoded once, in the worker (:func:`open_image`), and only after the same check, so a
decompression bomb is refused before anything is allocated. Every way a decoder can
fail becomes an :class:`~aex.contract.errors.ImageError` that says what is wrong.

:func:`prepare_image` shows the model what a viewer shows: EXIF orientation applied,
16-bit samples scaled (not clipped) to 8 bits, palettes expanded, CMYK and embedded
colour profiles converted to sRGB, transparency composited over white. A mode or a
profile that cannot be converted faithfully is refused with a message.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, UnsupportedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
# Pillow opens some camera JPEGs (a photo plus previews or depth maps) as MPO; the first
# frame is the photo, which is what viewers show.
STILL_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WebP"}
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# colour mode -> the ICC colour space an embedded profile must describe
PROFILE_SPACE = {
    "1": "GRAY", "L": "GRAY", "LA": "GRAY", **dict.fromkeys(SIXTEEN_BIT_MODES, "GRAY"),
    "P": "RGB", "PA": "RGB", "RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK",
}
SUPPORTED_MODES = tuple(PROFILE_SPACE)
ORIENTATION_TAG = 0x0112
# Pillow keeps up to 64 MiB of decompressed PNG text chunks per image; the service uses
# none of it, so an upload may not make the API hold more than this much.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an accepted upload says."""

    format: str
    mode: str
    size: tuple[int, int]  # (W, H) as stored, before any EXIF orientation


@dataclass(frozen=True)
class PreparedImage:
    """An image converted and resized for a model."""

    image: Image.Image
    original_size: tuple[int, int]  # (H, W) as uploaded, after its EXIF orientation
    resized: bool


def _guarded(action: Callable[[], T], what: str) -> T:
    """``action()``, with any decoder failure as an :class:`ImageError` naming ``what``.

    Pillow's plugins raise many kinds of exception on malformed input (``OSError``,
    ``SyntaxError``, ``ValueError``, ``struct.error``, ``zlib.error``, ``IndexError`` ...);
    for an upload they all mean the same thing.
    """
    try:
        return action()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"refused as a decompression bomb: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ImageError(f"{what}: {exc or type(exc).__name__}") from exc


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open ``data`` (header only) and check everything that needs no pixels."""
    if not data:
        raise ImageError("the upload is empty: send a PNG, JPEG or WebP image")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError(
            "the upload is not a PNG, JPEG or WebP image (or its header is damaged)"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"refused as a decompression bomb: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure to parse the header
        raise ImageError(f"the image header cannot be read: {exc or type(exc).__name__}") \
            from exc
    try:
        _check(image, max_pixels)
    except BaseException:
        image.close()
        raise
    return image


def _check(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels"
        )
    kind = STILL_FORMATS.get(str(image.format))
    if kind is None:
        raise UnsupportedImageError(f"{image.format} images are not accepted: send a PNG, "
                                    "JPEG or WebP image")
    frames = _guarded(lambda: int(getattr(image, "n_frames", 1)), "the image cannot be read")
    if frames > 1 and image.format != "MPO":
        raise ImageError(f"the {kind} image is animated ({frames} frames): send a still image")
    if image.mode not in SUPPORTED_MODES:
        raise UnsupportedImageError(
            f"the {kind} image's colour mode {image.mode} cannot be converted faithfully: "
            "save it as 8- or 16-bit greyscale, RGB, RGBA, palette or CMYK"
        )
    icc = image.info.get("icc_profile")
    if icc:
        space = _profile_space(icc)
        if space != PROFILE_SPACE[image.mode]:
            raise ImageError(
                f"the image's embedded colour profile is for {space.strip()} images, but the "
                f"image is {PROFILE_SPACE[image.mode]}: re-save it without the profile"
            )
    exif = image.info.get("exif")
    if exif:
        _guarded(lambda: Image.Exif().load(exif), "the image's EXIF data cannot be read "
                 "(re-save it without EXIF data)")


def _profile(icc: bytes) -> ImageCms.ImageCmsProfile:
    return _guarded(lambda: ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                    "the image's embedded colour profile cannot be read (re-save it without "
                    "the profile, or in sRGB)")


def _profile_space(icc: bytes) -> str:
    return str(_profile(icc).profile.xcolor_space).strip()


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Check an upload without decoding its pixels; what its header says.

    Checks the format, the dimensions against ``max_pixels``, that it is a still image in
    a colour mode :func:`prepare_image` converts faithfully, that its colour profile and
    EXIF data can be read, and (``Image.verify()``) the integrity of a PNG's chunks.

    Raises:
        ImageError: empty, truncated or corrupt data, an animation, unreadable metadata
            (422); ``UnsupportedImageError`` for anything but PNG, JPEG or WebP or a colour
            mode that cannot be converted (415); ``ImageTooLargeError`` for more than
            ``max_pixels`` pixels or a decompression bomb (413).
    """
    with _open(data, max_pixels) as image:
        info = ImageInfo(STILL_FORMATS[str(image.format)], image.mode, image.size)
        _guarded(image.verify, f"the {info.format} image is damaged")
    return info


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Check ``data`` as :func:`inspect_image` does, then decode its (first) frame.

    Raises the errors of :func:`inspect_image`, and :class:`ImageError` when the pixel
    data cannot be decoded (truncated or corrupt).
    """
    inspect_image(data, max_pixels)
    image = _open(data, max_pixels)
    try:
        _guarded(image.load, f"the {STILL_FORMATS[str(image.format)]} image cannot be decoded")
    except BaseException:
        image.close()
        raise
    return image


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _oriented(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (viewers show it that way)."""
    return _guarded(lambda: ImageOps.exif_transpose(image),
                    "the image's EXIF orientation cannot be applied")


def _from_16_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image as 8-bit ``L`` (``LA`` with its transparent value),
    scaled by 255/65535 and rounded."""
    import numpy as np

    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(f"the image's {image.mode} samples lie outside 0-65535 and cannot "
                         "be converted faithfully: save it as 8- or 16-bit greyscale")
    grey = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8))
        grey = Image.merge("LA", (grey, alpha))
    return grey


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit L, LA, RGB, RGBA or CMYK, its transparency as an alpha band."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return _from_16_bit(image)
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if mode in ("L", "RGB") and "transparency" in image.info:
        return image.convert("LA" if mode == "L" else "RGBA")
    return image


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Colours through the embedded profile into sRGB (RGB or RGBA); CMYK without a
    profile through Pillow's conversion; greyscale without a profile stays grey."""
    if not icc:
        return image.convert("RGB") if image.mode == "CMYK" else image
    bands = image.getbands()
    alpha = image.getchannel("A") if "A" in bands else None
    colour = image.convert(image.mode.rstrip("A")) if alpha is not None else image
    converted = _guarded(
        lambda: ImageCms.buildTransform(_profile(icc), _srgb(), colour.mode, "RGB").apply(
            colour),
        "the image's embedded colour profile cannot be applied (re-save it in sRGB)",
    )
    if alpha is None:
        return converted
    converted.putalpha(alpha)
    return converted


def _over_white(image: Image.Image) -> Image.Image:
    """Transparency composited over white (as the web page shows it)."""
    if "A" not in image.getbands():
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def prepare_image(image: Image.Image, size: tuple[int, int], channels: int) -> PreparedImage:
    """Orient, convert to sRGB ``channels`` (1 or 3) and resize to ``size`` = (H, W).

    See the module docstring for the conversions. The whole image is resized to the
    model's input size (the aspect ratio is not kept); ``resized`` says whether that
    changed it.
    """
    if image.mode not in SUPPORTED_MODES:
        raise UnsupportedImageError(
            f"colour mode {image.mode} cannot be converted faithfully: save the image as "
            "8- or 16-bit greyscale, RGB, RGBA, palette or CMYK"
        )
    icc = image.info.get("icc_profile") or None
    image = _oriented(image)
    original = (image.height, image.width)
    image = _over_white(_to_srgb(_eight_bit(image), icc))
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = size
    resized = image.size != (width, height)
    if resized:
        image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return PreparedImage(image, original, resized)


def decode_for_model(data: bytes, size: tuple[int, int], channels: int,
                     max_pixels: int) -> PreparedImage:
    """Encoded image bytes as a model sees them: safely decoded (:func:`open_image`),
    oriented, converted and resized (:func:`prepare_image`). The one decoding path of
    jobs and of ``aex explain``."""
    with open_image(data, max_pixels) as image:
        return prepare_image(image, size, channels)
