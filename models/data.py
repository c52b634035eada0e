"""Image data: ImageFolder trees decoded into memory, tar extraction, evaluation subsets."""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm"}
ARA_SEED = 1776


@dataclass
class ImageSet:
    """Decoded images ``(N, C, H, W) uint8``, labels ``(N,)`` and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.labels.numel())

    def floats(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images as float in ``[0, 1]``."""
        data = self.images if index is None else self.images[index]
        return data.float().div_(255.0)


def list_image_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """ImageFolder order: classes are sorted subfolder names, files sorted within each."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(
            f"data folder {root} has no class subfolders (expected {root}/<class>/*.jpg)"
        )
    samples = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted((root / c).rglob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
    ]
    if not samples:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"data folder {root} contains no images ({suffixes})")
    return samples, classes


def decode_image(path: Path, size: int | None) -> np.ndarray:
    """Decode one image file to ``(H, W, 3) uint8``, resized to ``size`` when given."""
    with Image.open(path) as file:
        img = file.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """A decoded RGB or greyscale image as ``(C, H, W) float32`` in ``[0, 1]``."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image_folder(root: str | Path, size: int | None = None,
                      max_bytes: int = 8 << 30) -> ImageSet:
    """Decode a whole ImageFolder tree into memory (resized to ``size``).

    Images that cannot be decoded are skipped and counted (``ImageSet.skipped``),
    with a warning. All images must share one size when ``size`` is None.
    """
    samples, classes = list_image_folder(root)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    for path, label in samples:
        try:
            arr = decode_image(path, size)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            skipped += 1
            continue
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(
                f"{path} is {arr.shape[1]}×{arr.shape[0]} but earlier images are "
                f"{arrays[0].shape[1]}×{arrays[0].shape[0]}; pass an input size to resize"
            )
        arrays.append(arr)
        labels.append(label)
        if len(arrays) * arr.nbytes > max_bytes:
            raise ValueError(f"{root} does not fit the in-memory limit of {max_bytes >> 20} MiB")
    if skipped:
        log.warning("skipped %d of %d files in %s that could not be decoded",
                    skipped, len(samples), root)
    if not arrays:
        raise ValueError(f"no decodable images in {root}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(labels, dtype=torch.long), classes, skipped)


def evaluation_indices(n_total: int, n_images: int, seed: int = ARA_SEED) -> torch.Tensor:
    """The first ``n_images`` of ``randperm(n_total)`` seeded with 1776 (method.md §7)."""
    if n_images <= 0:
        raise ValueError(f"n_images must be positive, got {n_images}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm[: min(n_images, n_total)]


def extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` into ``dest`` once (a marker file records completion)."""
    archive, dest = Path(archive), Path(dest)
    marker = dest / f".extracted-{archive.name}"
    if not marker.exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        marker.touch()
    return dest
