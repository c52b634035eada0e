"""Safe image decoding, shared by the API (validation) and the workers (model input).

Only PNG, JPEG and WebP are opened. The pixel count is checked from the header before
anything is decoded, so a decompression bomb is refused without allocating it; Pillow's
own bomb check and truncated files become :class:`~aex.contract.errors.ImageError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, UnsupportedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True)
class PreparedImage:
    """An image converted and resized for a model."""

    image: Image.Image
    original_size: tuple[int, int]  # (H, W) as uploaded
    resized: bool


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` fully and return the image.

    Raises:
        ImageError: empty, truncated or corrupt data (422); ``UnsupportedImageError`` for
            anything but PNG, JPEG or WebP (415); ``ImageTooLargeError`` for more than
            ``max_pixels`` pixels or a decompression bomb (413).
    """
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
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels"
        )
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}×{height})")
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the {image.format} image cannot be decoded: {exc}") from exc
    return image


def prepare_image(image: Image.Image, size: tuple[int, int], channels: int) -> PreparedImage:
    """Orient, convert to ``channels`` (1 or 3) and resize to ``size`` = (H, W).

    Transparency is composited over white. The whole image is resized to the model's
    input size (the aspect ratio is not kept); ``resized`` says whether that changed it.
    """
    original = (image.height, image.width)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
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
