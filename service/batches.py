"""Reading a batch upload: several ``image`` parts, or one zip or tar archive of images.

Everything happens in memory: nothing from an archive is ever written to disk, and a
member's path is only a label. The limits are checked before any image is read (the
declared count and sizes) and again while reading (the actual bytes), so an archive over
them is refused with a 4xx before any work: more images than ``max_batch_images``, more
bytes than ``max_batch_bytes`` once unpacked, more pixels than ``max_batch_pixels`` in
all, members nested deeper than :data:`MAX_DEPTH` folders, archives inside the archive,
links, devices and path names that are absolute, climb out (``..``), hold control
characters or backslashes, or are longer than :data:`MAX_NAME`. An image whose header
is damaged or not an accepted format fails alone (its error is in the result); one over
the pixel limit is a limit, and refuses the request.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

from aex.contract.errors import ImageError, ImageTooLargeError, InvalidJobError
from aex.contract.imaging import inspect_image
from aex.contract.jobs import MAX_IMAGE_NAME
from aex.contract.settings import Settings

MAX_DEPTH = 8
MAX_NAME = MAX_IMAGE_NAME
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 1024
ENTRY_FACTOR = 4  # entries (folders, skipped files) an archive may hold per allowed image
SKIPPED_PREFIXES = ("__MACOSX/",)


class ArchiveError(InvalidJobError):
    """An archive this service does not unpack (the message says why)."""


@dataclass
class BatchItem:
    """One image of a batch: its label, its bytes (None when it failed the header check),
    and why it failed."""

    name: str
    data: bytes | None
    error: str | None = None


def archive_kind(data: bytes) -> str | None:
    """``"zip"`` or ``"tar"`` (plain or gzip/bzip2/xz-compressed) when ``data`` is an
    archive, else None."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        return "tar"
    if data[257:262] == b"ustar":
        return "tar"
    return None


def check_name(name: str) -> str:
    """A member path that is safe to show as a label; :class:`ArchiveError` otherwise."""
    if not name or len(name) > MAX_NAME:
        raise ArchiveError(f"an archive member's path is empty or longer than {MAX_NAME} "
                           f"characters: {name[:60]!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        raise ArchiveError(f"archive member {name!r}: control characters and backslashes "
                           "are not accepted in paths")
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ArchiveError(f"archive member {name!r} has an absolute path")
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} climbs out of the archive (..)")
    if len(parts) > MAX_DEPTH + 1:
        raise ArchiveError(f"archive member {name!r} is nested deeper than {MAX_DEPTH} "
                           "folders")
    return name


def _decompressed(data: bytes, limit: int) -> bytes:
    """A compressed tar stream unpacked in memory, refused past ``limit`` bytes."""
    if data[:2] == b"\x1f\x8b":
        gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = gz.decompress(data, limit + 1)
        if len(out) > limit or gz.unconsumed_tail:
            raise ImageTooLargeError(f"the archive unpacks to more than {limit} bytes")
        return out
    decompressor: Any
    if data[:3] == b"BZh":
        decompressor = bz2.BZ2Decompressor()
    elif data[:6] == b"\xfd7zXZ\x00":
        decompressor = lzma.LZMADecompressor()
    else:
        return data
    try:
        out = decompressor.decompress(data, max_length=limit + 1)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ArchiveError(f"the archive is damaged: {exc}") from exc
    if len(out) > limit:
        raise ImageTooLargeError(f"the archive unpacks to more than {limit} bytes")
    return out


def _hidden(name: str) -> bool:
    return name.startswith(SKIPPED_PREFIXES) or name.rsplit("/", 1)[-1].startswith(".")


def _members(data: bytes, settings: Settings) -> list[tuple[str, bytes]]:
    """(path, bytes) of each file of the archive, in archive order."""
    max_entries = settings.max_batch_images * ENTRY_FACTOR + 16
    limit = settings.max_batch_bytes
    files: list[tuple[str, bytes]] = []
    total = 0
    if archive_kind(data) == "zip":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ArchiveError(f"the zip archive is damaged: {exc}") from exc
        if len(infos) > max_entries:
            raise ImageTooLargeError(f"the archive holds {len(infos)} entries; at most "
                                     f"{max_entries} are read")
        for info in infos:
            check_name(info.filename)
            if info.is_dir() or _hidden(info.filename):
                continue
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                raise ArchiveError(f"archive member {info.filename!r} is a link or a device, "
                                   "not a file")
            total += info.file_size
            if total > limit:
                raise ImageTooLargeError(f"the archive unpacks to more than {limit} bytes")
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError,
                    zlib.error, EOFError) as exc:
                raise ArchiveError(f"archive member {info.filename!r} cannot be read: "
                                   f"{exc}") from exc
            if len(content) != info.file_size:
                raise ArchiveError(f"archive member {info.filename!r} is not the size its "
                                   "header declares")
            files.append((info.filename, content))
        return files
    plain = _decompressed(data, limit + (max_entries + 2) * 1024)
    try:
        archive_tar = tarfile.open(fileobj=io.BytesIO(plain), mode="r:")
        entries = 0
        while (entry := archive_tar.next()) is not None:
            entries += 1
            if entries > max_entries:
                raise ImageTooLargeError(f"the archive holds more than {max_entries} "
                                         "entries")
            check_name(entry.name)
            if entry.isdir() or _hidden(entry.name):
                continue
            if not entry.isfile():
                raise ArchiveError(f"archive member {entry.name!r} is a link or a device, "
                                   "not a file")
            total += entry.size
            if total > limit:
                raise ImageTooLargeError(f"the archive unpacks to more than {limit} bytes")
            handle = archive_tar.extractfile(entry)
            content = handle.read() if handle is not None else b""
            files.append((entry.name, content))
    except tarfile.TarError as exc:
        raise ArchiveError(f"the tar archive is damaged: {exc}") from exc
    return files


def _manifest(data: bytes) -> dict[str, Any]:
    """The archive's ``manifest.json``: member path -> targets."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not all(
            isinstance(v, str | list) for v in manifest.values()):
        raise ArchiveError(f"{MANIFEST} must map member paths to targets (a string such as "
                           "'cat,dog' or a list of classes)")
    return manifest


def _item(name: str, data: bytes, settings: Settings) -> tuple[BatchItem, int]:
    """An image checked from its header: (item, its pixels). Too many pixels is a limit
    (413 for the request); any other defect fails this image alone."""
    try:
        info = inspect_image(data, settings.max_pixels)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except ImageError as exc:
        return BatchItem(name, None, str(exc)), 0
    return BatchItem(name, data), info.size[0] * info.size[1]


def read_batch(uploads: list[tuple[str, bytes]],
               settings: Settings) -> tuple[list[BatchItem], dict[str, Any]]:
    """The images of a batch upload in order, and the archive's manifest (empty without).

    ``uploads`` are (file name, bytes) of the ``image`` parts: several images, or one
    archive. Raises a 4xx error (:class:`ArchiveError`, ``ImageTooLargeError``) for an
    upload over the limits or an archive this service does not unpack.
    """
    manifest: dict[str, Any] = {}
    if len(uploads) == 1 and archive_kind(uploads[0][1]) is not None:
        entries = []
        for name, content in _members(uploads[0][1], settings):
            if name == MANIFEST:
                manifest = _manifest(content)
            elif archive_kind(content) is not None:
                raise ArchiveError(f"archive member {name!r} is an archive: archives inside "
                                   "archives are not unpacked")
            else:
                entries.append((name, content))
        unknown = sorted(set(manifest) - {name for name, _ in entries})
        if unknown:
            raise ArchiveError(f"{MANIFEST} names files the archive does not hold: "
                               f"{', '.join(unknown[:5])}")
    else:
        if any(archive_kind(data) is not None for _, data in uploads):
            raise ArchiveError("send one archive alone, or images: not archives among "
                               "several parts")
        entries = [(check_label(name, n), data) for n, (name, data) in enumerate(uploads)]
    if not entries:
        raise ArchiveError("the archive holds no image")
    if len(entries) > settings.max_batch_images:
        raise ImageTooLargeError(f"{len(entries)} images; at most {settings.max_batch_images} "
                                 "in one batch (AEX_MAX_BATCH_IMAGES)")
    total_bytes = sum(len(data) for _, data in entries)
    if total_bytes > settings.max_batch_bytes:
        raise ImageTooLargeError(f"the images hold {total_bytes} bytes; at most "
                                 f"{settings.max_batch_bytes} in one batch")
    items, pixels = [], 0
    for name, data in entries:
        item, count = _item(name, data, settings)
        items.append(item)
        pixels += count
        if pixels > settings.max_batch_pixels:
            raise ImageTooLargeError(f"the images hold more than {settings.max_batch_pixels} "
                                     "pixels in all (AEX_MAX_BATCH_PIXELS)")
    return items, manifest


def check_label(name: str | None, index: int) -> str:
    """An uploaded part's file name as a label (its last path part, printable, bounded);
    ``image-N`` when it has none."""
    label = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    label = "".join(c for c in label if c.isprintable())[:MAX_NAME]
    return label or f"image-{index}"
