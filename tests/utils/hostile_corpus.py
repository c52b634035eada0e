"""A generated corpus of hostile input: damaged and tricky images, field values, ids.

Every case is made here from a fixed seed (nothing downloaded, nothing random between
runs). Each names the statuses the API may answer; none allows a 5xx.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from aex_service_testing import bomb_png, image_bytes, png_header_only
from PIL import Image, ImageCms

ACCEPTED = 202
REFUSED = (400, 404, 413, 415, 422)


@dataclass(frozen=True)
class Case:
    """One hostile input: what to send, the statuses allowed, and words the refusal says."""

    name: str
    value: bytes | str
    statuses: tuple[int, ...]
    words: str = ""


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(rows: list[bytes], width: int, height: int, bit_depth: int, colour_type: int,
            extra: bytes = b"") -> bytes:
    """A PNG written chunk by chunk (``rows``: unfiltered scanlines), ``extra`` chunks
    before the pixel data; what Pillow cannot write (16-bit colour, bombs in metadata)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\0" + row for row in rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def grey16_png(width: int = 32, height: int = 32, transparent: int | None = None) -> bytes:
    """A 16-bit greyscale gradient, left black to right white (65535)."""
    rows = [b"".join(struct.pack(">H", x * 65535 // (width - 1)) for x in range(width))
            for _ in range(height)]
    extra = chunk(b"tRNS", struct.pack(">H", transparent)) if transparent is not None else b""
    return raw_png(rows, width, height, 16, 0, extra)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _text_bomb(kind: bytes, head: bytes) -> bytes:
    """A PNG with one metadata chunk that inflates to 4 MiB (past Pillow's 1 MiB limit)."""
    return raw_png([b"\0" * 24] * 8, 8, 8, 8, 2,
                   chunk(kind, head + zlib.compress(b"\0" * (4 << 20), 9)))


def _many_texts() -> bytes:
    """A PNG whose text chunks, each under the per-chunk limit, add up past the total."""
    texts = b"".join(chunk(b"zTXt", b"c%d\0\0" % i + zlib.compress(b"a" * 900_000, 9))
                     for i in range(12))
    return raw_png([b"\0" * 24] * 8, 8, 8, 8, 2, texts)


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:])


def _with_profile(image: Image.Image, profile: bytes) -> bytes:
    return encoded(image, "PNG", icc_profile=profile)


def image_cases() -> Iterator[Case]:
    """Uploads: named damaged, disguised and tricky images, then generated mutations."""
    rgb = image_bytes("PNG", (40, 32))
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    yield Case("empty", b"", (422,), "empty")
    yield Case("text", b"hello, this is not an image\n" * 20, (415,), "not a PNG")
    yield Case("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
               (415,), "not a PNG")
    for fmt in ("GIF", "BMP", "TIFF", "ICO"):
        yield Case(f"{fmt} image", image_bytes(fmt, (16, 16)), (415,), "not a PNG")
    yield Case("PNG signature only", b"\x89PNG\r\n\x1a\n", (415, 422))
    yield Case("truncated IHDR", rgb[:20], (415, 422))
    yield Case("no IEND", rgb[:-12], (422,), "damaged")
    yield Case("20000x20000 header", png_header_only(20_000, 20_000), (413,), "pixels")
    yield Case("1x20000000 header", png_header_only(1, 20_000_000), (413,), "pixels")
    yield Case("zero width", png_header_only(0, 16), (415, 422))
    yield Case("decompression bomb", bomb_png(4500), (413,), "pixels")
    yield Case("iCCP bomb", _text_bomb(b"iCCP", b"icc\0\0"), (422,), "cannot be read")
    yield Case("zTXt bomb", _text_bomb(b"zTXt", b"Comment\0\0"), (422,), "cannot be read")
    yield Case("iTXt bomb", _text_bomb(b"iTXt", b"Comment\0\1\0\0\0"), (422,), "cannot be read")
    yield Case("text chunks past the total", _many_texts(), (422,), "cannot be read")
    yield Case("animated PNG", _animated("PNG"), (422,), "animated")
    yield Case("animated WebP", _animated("WEBP"), (422,), "animated")
    yield Case("unreadable colour profile", _with_profile(Image.new("RGB", (8, 8)), b"x" * 200),
               (422,), "colour profile")
    yield Case("Lab profile on an RGB image", _with_profile(Image.new("RGB", (8, 8)), lab),
               (422,), "colour profile")
    yield Case("garbage EXIF", encoded(Image.new("RGB", (8, 8)), "JPEG",
                                       exif=b"Exif\0\0" + bytes(range(256)) * 4), (202, 422))
    yield Case("16-bit grey", grey16_png(), (ACCEPTED,))
    yield Case("16-bit grey, transparent black", grey16_png(transparent=0), (ACCEPTED,))
    yield Case("CMYK JPEG", encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"),
               (ACCEPTED,))
    yield Case("palette with transparency",
               encoded(Image.new("P", (8, 8)), "PNG", transparency=0), (ACCEPTED,))
    yield from mutated_images()


def mutated_images(seed: int = 11, flips: int = 40) -> Iterator[Case]:
    """Each format truncated at many lengths and with a few bytes changed at random: some
    still decode (202), the rest are refused; none may be a 500."""
    rng = random.Random(seed)
    exif = Image.Exif()
    exif[0x0112] = 6
    sources = {
        "PNG": image_bytes("PNG", (24, 20)),
        "JPEG": encoded(Image.open(io.BytesIO(image_bytes("PNG", (24, 20)))), "JPEG",
                        exif=exif.tobytes()),
        "WebP": image_bytes("WEBP", (24, 20)),
        "16-bit PNG": grey16_png(12, 10),
    }
    allowed = (ACCEPTED, *REFUSED)
    for fmt, data in sources.items():
        for length in range(0, len(data), max(1, len(data) // 25)):
            yield Case(f"{fmt} cut at {length} of {len(data)}", data[:length], allowed)
        for n in range(flips):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            yield Case(f"{fmt} with changed bytes #{n}", bytes(damaged), allowed)


def target_cases() -> Iterator[Case]:
    """``targets`` values (the test model's classes: cat, dog, ship)."""
    yield Case("superscript two", "²", (404,), "unknown class '²'")
    yield Case("Arabic-Indic three", "٣", (404,), "unknown class")
    yield Case("full-width one", "１", (404,), "unknown class")
    yield Case("superscript in a list", "cat,²", (404,), "unknown class '²'")
    yield Case("superscript in JSON", '["²"]', (404,), "unknown class '²'")
    yield Case("index too large", "99999999999", (404,), "unknown class")
    yield Case("negative index", "-1", (404,), "unknown class")
    yield Case("deep JSON nesting", "[" * 3990, (422,), "no nesting")
    yield Case("nested list", "[[1]]", (422,), "no nesting")
    yield Case("object in a list", '[{"a": 1}]', (422,), "no nesting")
    yield Case("JSON object", '{"a": 1}', (404, 422))
    yield Case("float in JSON", "[1.5]", (422,), "class name or index")
    yield Case("infinity in JSON", "[1e999]", (422,), "class name or index")
    yield Case("boolean in JSON", '["cat", true]', (422,), "class name or index")
    yield Case("null in JSON", "[null]", (422,), "class name or index")
    yield Case("broken JSON", '["cat"', (422,), "not a valid JSON list")
    yield Case("too many targets", ",".join(["cat"] * 150), (422,), "at most")
    yield Case("over the field's length", "cat," * 1001, (422,), "targets")
    yield Case("commas only", " , , ", (422,), "empty")
    yield Case("NUL in a name", "cat\0", (404,), "unknown class")
    yield Case("unicode escape", '["\\u00b2"]', (404,), "unknown class '²'")


def number_cases() -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(field, value, statuses) for the numeric fields of explanations."""
    for value in ("٣", "３", "²", "0x10", "1e2", "3.5", "nan", "9" * 5000, "-1", "0"):
        yield "steps", value, (422,)
    for value in ("1_0", " 7 ", "+7", "7.0", ""):  # an empty form field is an omitted one
        yield "steps", value, (ACCEPTED,)
    for value in ("nan", "inf", "-inf", "1e999", "1e-400", "0", "-0", "٠.١", "0x1", "2"):
        yield "rho", value, (422,)


def job_id_cases() -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(path after ``/v1/jobs/``, statuses, words) for ids that name no job, URL-encoded as
    a client sends them."""
    real = "0" * 32
    for path in (real, real + "%0A", real + "%0D%0A", real.upper().replace("0", "A"), "0" * 31,
                 "0" * 33, "%00", "%FF%FE", "%C3%A9" * 32, real + "%20", "%20" + real,
                 "a" * 64):
        yield path, (404,), "unknown job"
    yield "..%2F..%2Fetc%2Fpasswd", (404,), ""  # no route has that many segments
    yield "a" * 65, (422,), "job_id"
