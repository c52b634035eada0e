"""Standard, adversarial and robust training (method.md §5–§6), resumable and distributable."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .._ara import evaluate_accuracy
from .._architectures import create_model, list_models
from .._perturb import perturb
from ..checkpoint import save_checkpoint
from ..data import ImageSet
from ..store import CheckpointEntry, ModelStore, validate_name
from ._augment import augment
from ._robust import PsiController, robust_loss

log = logging.getLogger(__name__)
ADV_DEFAULT_EPS = {"l2": 0.01, "l2min": 0.1}
STATE_FILE = "state.pt"


class ResumeMismatchError(ValueError):
    """A resume state was written with different training options."""


@dataclass
class TrainConfig:
    """Every option of a training run (all constants of method.md §5–§6 overridable)."""

    arch: str = "resnet44"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    act: str | None = None
    input_size: int = 32
    mean: list[float] | None = None
    std: list[float] | None = None
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, float] = (0.85, 0.975)
    seed: int = 0
    adversarial: str | None = None
    adv_eps: float | None = None
    adv_steps: int = 7
    robust: bool = False
    zeta: float = 0.2
    z: float = 2.0
    psi0: float = 220.0
    psi_k: float = 0.02
    target_loss: float = 1.5
    psi_up: float = 1.0
    psi_down: float = -0.01
    amp: bool = False
    max_batches: int | None = None

    def resolved(self) -> TrainConfig:
        """Fill defaults that depend on other options; validate everything."""
        cfg = dataclasses.replace(self)
        if cfg.arch not in list_models():
            known = ", ".join(list_models())
            raise ValueError(f"unknown architecture {cfg.arch!r}; known: {known}")
        if cfg.act is None:
            cfg.act = "hhrelu" if cfg.robust else "relu"
        if cfg.adversarial not in (None, "l2", "l2min"):
            raise ValueError(f"adversarial must be 'l2' or 'l2min', got {cfg.adversarial!r}")
        if cfg.adversarial and cfg.adv_eps is None:
            cfg.adv_eps = ADV_DEFAULT_EPS[cfg.adversarial]
        for name in ("epochs", "batch_size", "adv_steps", "input_size"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.lr <= 0 or cfg.psi0 < 0 or not 0 <= cfg.zeta <= 1 or cfg.target_loss <= 0:
            raise ValueError("lr and target_loss must be > 0, psi0 ≥ 0 and zeta in [0, 1]")
        cfg.lr_milestones = tuple(cfg.lr_milestones)  # type: ignore[assignment]
        return cfg

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        return data


@dataclass
class EpochStats:
    """One line of the JSON-lines log."""

    epoch: int
    loss: float
    ce: float
    accuracy: float
    penalty: float
    psi: float
    lr: float
    images: int
    seconds: float
    test_accuracy: float | None = None


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: nn.Module
    history: list[EpochStats]
    test_accuracy: float | None
    metrics: dict[str, Any]
    entry: CheckpointEntry | None


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def channel_stats(data: ImageSet) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a training set in ``[0, 1]``."""
    total = torch.zeros(data.images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for i in range(0, len(data), 4096):
        chunk = data.floats(slice(i, i + 4096)).double()
        total += chunk.sum((0, 2, 3))
        squares += chunk.square().sum((0, 2, 3))
        count += chunk.numel() // chunk.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Owns the model, optimiser, schedule, ψ and the run directory of one training run.

    Example::

        trainer = Trainer(TrainConfig(arch="resnet20", robust=True, epochs=30), train_set,
                          run_dir="runs/r20")
        result = trainer.fit(test_set)
    """

    def __init__(self, config: TrainConfig, train_set: ImageSet, run_dir: str | Path,
                 device: str | torch.device | None = None, resume: bool = False,
                 show_progress: bool = True) -> None:
        self.rank, self.world = _world()
        self.distributed = dist.is_available() and dist.is_initialized()
        self.config = config.resolved()
        cfg = self.config
        if len(train_set.classes) < 2:
            raise ValueError(
                f"training needs at least two classes, the data has {len(train_set.classes)}"
            )
        if len(train_set) < 2:
            raise ValueError("training needs at least two images")
        if cfg.mean is None or cfg.std is None:
            cfg.mean, cfg.std = channel_stats(train_set)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.amp and self.device.type != "cuda":
            raise ValueError("--amp needs a CUDA device")
        self.train_set = train_set
        self.classes = list(train_set.classes)
        self.run_dir = Path(run_dir)
        self.show_progress = show_progress and self.rank == 0
        self.arch_kwargs = {
            **cfg.arch_kwargs,
            "act": cfg.act,
            "num_classes": len(self.classes),
            "input_size": cfg.input_size,
            "mean": cfg.mean,
            "std": cfg.std,
        }
        torch.manual_seed(cfg.seed)
        # Channels-last weights and images (see augment): the convolutions' fastest layout.
        self.model = create_model(cfg.arch, **self.arch_kwargs).to(self.device).to(
            memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.lr * self.world, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        milestones = sorted({max(1, int(f * cfg.epochs + 1e-9)) for f in cfg.lr_milestones})
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.1)
        self.psi = PsiController(cfg.psi0, cfg.psi_k, cfg.target_loss, cfg.psi_up, cfg.psi_down)
        self.epoch = 0
        self.history: list[EpochStats] = []
        if self.distributed:
            for p in self.model.parameters():
                dist.broadcast(p.data, 0)
        if resume:
            self._load_state()
        elif self.rank == 0 and (self.run_dir / STATE_FILE).exists():
            raise ValueError(
                f"{self.run_dir} already holds a training state; pass --resume to continue it "
                "or choose another output folder"
            )

    # ----- state -------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        data = self.config.to_dict()
        data.pop("epochs")
        data.update(classes=self.classes, world_size=self.world, n_train=len(self.train_set))
        return data

    def _load_state(self) -> None:
        path = self.run_dir / STATE_FILE
        if not path.exists():
            raise ValueError(f"--resume: no training state in {self.run_dir}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved, current = state["identity"], json.loads(json.dumps(self._identity()))
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        # An option added after the run started matches when it keeps its default.
        for key in set(current) - set(saved):
            if key in defaults and current[key] == defaults[key]:
                saved[key] = current[key]
        diffs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if diffs:
            detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}"
                               for k in diffs[:5])
            raise ResumeMismatchError(
                f"cannot resume {self.run_dir}: the saved run used other options ({detail})"
            )
        if state["epochs"] != self.config.epochs:
            raise ResumeMismatchError(
                f"cannot resume {self.run_dir}: it was started for {state['epochs']} epochs, "
                f"not {self.config.epochs} (the learning-rate schedule depends on it)"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.psi.integral = float(state["psi_integral"])
        self.epoch = int(state["epoch"])
        self.history = [EpochStats(**h) for h in state["history"]]
        torch.set_rng_state(state["rng"])
        log.info("resumed %s at epoch %d", self.run_dir, self.epoch)

    def _save_state(self) -> None:
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _atomic_save({
            "identity": json.loads(json.dumps(self._identity())),
            "epochs": self.config.epochs,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "psi_integral": self.psi.integral,
            "epoch": self.epoch,
            "history": [dataclasses.asdict(h) for h in self.history],
            "rng": torch.get_rng_state(),
        }, self.run_dir / STATE_FILE)
        (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))

    # ----- one epoch -----------------------------------------------------------------------

    def _epoch_order(self) -> tuple[torch.Tensor, torch.Generator]:
        gen = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.train_set), generator=gen)
        per_rank = len(order) // self.world
        return order[self.rank * per_rank:(self.rank + 1) * per_rank], gen

    def _sync_gradients(self) -> None:
        # Manual all-reduce instead of DistributedDataParallel: it works with the double
        # backward of the gradient penalty, which DDP's reducer does not support. Every
        # collective runs on device tensors, so a NCCL group works (also with one process).
        if not self.distributed:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world)
        for b in self.model.buffers():
            dist.broadcast(b, 0)

    def accumulate_gradients(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                             weight: float = 1.0) -> tuple[torch.Tensor, int]:
        """One batch's share of a step: augment, attack, loss, and ``weight · ∇loss``
        added to the parameters' gradients. Returns ``(loss, ce, penalty)`` as one float64
        tensor on the training device and the number of correct predictions (before the
        update)."""
        cfg = self.config
        x = augment(x, gen)
        if cfg.adversarial:
            affected = (torch.rand(len(y), generator=gen) < 0.5).float() if cfg.robust else None
            mode: Literal["l2", "l2min"] = "l2" if cfg.adversarial == "l2" else "l2min"
            x = perturb(self.model, x, y, mode=mode, eps=cfg.adv_eps or 0.0,
                        steps=cfg.adv_steps, overshoot=1.0, affected=affected,
                        train_mode=True).x_adv
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            if cfg.robust:
                loss, ce, penalty, logits, _ = robust_loss(self.model, x, y, self.psi.psi,
                                                           cfg.zeta, cfg.z, gen)
            else:
                logits = self.model(x)
                loss = F.cross_entropy(logits, y)
                ce, penalty = loss.detach(), torch.zeros(())
        (loss * weight if weight != 1.0 else loss).backward()
        correct = int((logits.argmax(1) == y).sum())
        # On the training device: a NCCL group reduces only device tensors (see _step).
        stats = torch.stack([loss.detach().float(), ce.float(),
                             penalty.to(loss.device).float()]).double()
        return stats, correct

    def _step(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
              ) -> tuple[float, float, float, int]:
        self.optimizer.zero_grad(set_to_none=True)
        stats, correct = self.accumulate_gradients(x, y, gen)
        self._sync_gradients()
        self.optimizer.step()
        if self.distributed:
            dist.all_reduce(stats)
            stats /= self.world
        if self.config.robust:
            self.psi.update(float(stats[1]))
        return float(stats[0]), float(stats[1]), float(stats[2]), correct

    def train_epoch(self) -> EpochStats:
        """Train one epoch and write the resume state at its end."""
        from tqdm import tqdm

        cfg = self.config
        order, gen = self._epoch_order()
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        batches = [b for b in batches if len(b) > 1][: cfg.max_batches]
        start, seen, correct = time.time(), 0, 0
        sums = [0.0, 0.0, 0.0]
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not self.show_progress, leave=True, dynamic_ncols=True)
        for idx in bar:
            x = self.train_set.floats(idx).to(self.device)
            y = self.train_set.labels[idx].to(self.device)
            loss, ce, penalty, ok = self._step(x, y, gen)
            n = len(idx)
            seen, correct = seen + n, correct + ok
            sums = [s + v * n for s, v in zip(sums, (loss, ce, penalty), strict=True)]
            bar.set_postfix(loss=f"{sums[0] / seen:.3f}", acc=f"{correct / seen:.3f}",
                            psi=f"{self.psi.psi:.3g}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.epoch += 1
        stats = EpochStats(
            epoch=self.epoch, loss=sums[0] / seen, ce=sums[1] / seen, accuracy=correct / seen,
            penalty=sums[2] / seen, psi=self.psi.psi, lr=lr, images=seen * self.world,
            seconds=round(time.time() - start, 2),
        )
        return stats

    # ----- the run --------------------------------------------------------------------------

    def fit(self, test_set: ImageSet | None = None,
            on_epoch: Callable[[EpochStats], None] | None = None) -> list[EpochStats]:
        """Train the remaining epochs, logging and checkpointing after each one."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while self.epoch < self.config.epochs:
            stats = self.train_epoch()
            if test_set is not None and self.rank == 0:
                stats.test_accuracy = evaluate_accuracy(self.model, test_set, self.device)
            self.history.append(stats)
            self._save_state()
            if self.rank == 0:
                with open(self.run_dir / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(dataclasses.asdict(stats)) + "\n")
            log.info("epoch %d: %s", stats.epoch, dataclasses.asdict(stats))
            if on_epoch is not None:
                on_epoch(stats)
        return self.history

    def register(self, name: str, metrics: dict[str, Any], store: ModelStore | None = None,
                 aliases: list[str] | None = None,
                 command: str | None = None) -> CheckpointEntry:
        """Save the trained network into the model registry under ``name``.

        ``command``, when given, is recorded as the training command in the metadata.
        """
        validate_name(name)
        training = {
            **self.config.to_dict(),
            "psi_integral": self.psi.integral,
            "psi_final": self.psi.psi,
            "epochs_done": self.epoch,
            "world_size": self.world,
            "train_images": len(self.train_set),
            "train_seconds": round(sum(h.seconds for h in self.history), 1),
            **({"command": command} if command else {}),
        }
        return save_checkpoint(
            self.model, name, arch=self.config.arch, arch_kwargs=self.arch_kwargs,
            classes=self.classes, training=training, metrics=metrics, store=store,
            aliases=aliases,
        )
