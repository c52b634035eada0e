"""A whole training run: data, distributed set-up, training, evaluation, registration."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._ara import evaluate_accuracy
from ..data import ImageSet, load_image_folder
from ..store import ModelStore
from ._trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)


def load_training_data(
    data: str | Path | None = None,
    train_dir: str | Path | None = None,
    test_dir: str | Path | None = None,
    dataset: str | None = None,
    input_size: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[ImageSet, ImageSet | None]:
    """Decode the training (and test) images.

    Exactly one source: ``data`` (an ImageFolder root with ``train/`` and ``test/``),
    ``train_dir`` (+ optional ``test_dir``), or ``dataset="cifar10"`` (torchvision's
    downloader into ``cache_dir``, written out once as an ImageFolder tree).
    """
    sources = [s for s in (data, train_dir, dataset) if s]
    if len(sources) != 1:
        raise ValueError("give exactly one of --data DIR, --train-dir DIR or --dataset cifar10")
    if dataset:
        if dataset != "cifar10":
            raise ValueError(f"unknown dataset {dataset!r}; only 'cifar10' can be downloaded")
        data = _cifar10_folder(Path(cache_dir or Path.home() / ".cache" / "aex" / "datasets"))
    if data:
        root = Path(data)
        train_dir, test_dir = root / "train", root / "test"
        if not train_dir.is_dir():
            raise ValueError(f"{root} has no train/ folder (expected {root}/train/<class>/...)")
        if not test_dir.is_dir():
            test_dir = None
    train = load_image_folder(train_dir, input_size)  # type: ignore[arg-type]
    test = load_image_folder(test_dir, input_size) if test_dir else None
    if test is not None and test.classes != train.classes:
        raise ValueError(
            f"train and test folders have different classes: {train.classes} vs {test.classes}"
        )
    return train, test


def _cifar10_folder(cache: Path) -> Path:
    """Download CIFAR-10 with torchvision once and write it as an ImageFolder tree."""
    root = cache / "cifar10"
    marker = root / ".complete"
    if marker.exists():
        return root
    from torchvision.datasets import CIFAR10

    for split, train in (("train", True), ("test", False)):
        ds = CIFAR10(str(cache / "cifar10-download"), train=train, download=True)
        for i, (img, label) in enumerate(ds):
            folder = root / split / ds.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:05d}.png")
    marker.touch()
    return root


def run_training(
    config: TrainConfig,
    train_set: ImageSet,
    test_set: ImageSet | None,
    out_dir: str | Path,
    *,
    name: str | None = None,
    resume: bool = False,
    ara_images: int = 0,
    ara_steps: int = 450,
    store: ModelStore | None = None,
    aliases: list[str] | None = None,
    show_progress: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train, evaluate (accuracy; ARA on ``ara_images`` test images) and register.

    ``command`` (the command line that started the run) is kept in the metadata.
    Under ``torchrun`` (``WORLD_SIZE`` set, also for one process) the process group is set
    up here (NCCL on CUDA, gloo otherwise); only rank 0 evaluates and writes.
    """
    distributed = "WORLD_SIZE" in os.environ  # torchrun sets it, also for one process
    device = None
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
    try:
        trainer = Trainer(config, train_set, out_dir, device=device, resume=resume,
                          show_progress=show_progress)
        trainer.fit(test_set)
        metrics: dict[str, Any] = {}
        entry = None
        test_accuracy = None
        if trainer.rank == 0:
            if test_set is not None:
                test_accuracy = evaluate_accuracy(trainer.model, test_set, trainer.device)
                metrics.update(accuracy=test_accuracy, n_test=len(test_set))
            if ara_images and test_set is not None:
                from .._ara import ara_on_dataset

                # Not strict: a failed sanity check must not cost the trained model; it is
                # logged and counted in the metadata instead.
                for mode, key in (("l2min", "ara_attack"), ("btr", "ara_btr")):
                    result = ara_on_dataset(trainer.model, test_set, ara_images, mode=mode,
                                            steps=ara_steps, strict=False)
                    metrics[key] = result.value
                    if result.unsettled:
                        metrics[f"{key}_unsettled"] = result.unsettled
                        log.warning("%s: %d of %d images unsettled (raise --ara-steps)",
                                    key, result.unsettled, ara_images)
                    if result.censored:
                        metrics[f"{key}_censored"] = result.censored
                metrics["ara_images"] = ara_images
            if name:
                entry = trainer.register(name, metrics, store=store, aliases=aliases,
                                        command=command)
                log.info("registered %s in %s", name, entry.meta_path.parent)
        return TrainResult(trainer.model, trainer.history, test_accuracy, metrics, entry)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
