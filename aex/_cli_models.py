"""``aex models ...``, ``aex train`` and ``aex evaluate``: the science from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the model, training and evaluation subcommands to ``sub``."""
    models = sub.add_parser("models", help="list and import checkpoints in the model registry")
    msub = models.add_subparsers(dest="models_command", required=True)
    lst = msub.add_parser("list", help="list registered checkpoints")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    lst.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    lst.set_defaults(func=_models_list)
    imp = msub.add_parser("import-reference",
                          help="convert one of the paper's published checkpoints, safely")
    imp.add_argument("file", type=Path, help="reference .pt file")
    imp.add_argument("--name", required=True, help="registry name for the imported model")
    imp.add_argument("--alias", action="append", default=[], help="extra name (repeatable)")
    imp.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    imp.set_defaults(func=_models_import)
    _add_train(sub)
    _add_evaluate(sub)


def model_store(args: argparse.Namespace) -> Any:
    """The registry that ``--model-dir`` names, or the default one."""
    from aex.models import ModelStore

    return ModelStore(args.model_dir) if getattr(args, "model_dir", None) else ModelStore()


def _models_list(args: argparse.Namespace) -> int:
    entries = model_store(args).list()
    if args.json:
        print(json.dumps([e.summary() for e in entries], indent=2))
        return 0
    if not entries:
        print("no models registered")
    for e in entries:
        metrics = e.meta.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        aliases = f" (aliases: {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.name}{aliases}: {e.meta['arch']}, {len(e.meta['classes'])} classes"
              f"{', ' + shown if shown else ''}")
    return 0


def _models_import(args: argparse.Namespace) -> int:
    from aex.models import import_reference

    entry = import_reference(args.file, args.name, store=model_store(args), aliases=args.alias)
    print(f"imported {args.file} as {entry.name} ({entry.weights_path})")
    return 0


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a network (standard, adversarial and/or robust)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, help="ImageFolder root with train/ and test/")
    data.add_argument("--train-dir", type=Path, help="ImageFolder tree of training images")
    data.add_argument("--test-dir", type=Path, help="ImageFolder tree of test images")
    data.add_argument("--dataset", choices=["cifar10"], help="download a dataset instead")
    data.add_argument("--cache-dir", type=Path, help="download cache for --dataset")
    net = p.add_argument_group("network")
    net.add_argument("--arch", default="resnet44", help="architecture from the registry")
    net.add_argument("--widths", type=int, nargs="+", help="channels per stage (CIFAR ResNets)")
    net.add_argument("--act", choices=["relu", "hhrelu"], help="default: hhrelu with --robust")
    net.add_argument("--input-size", type=int, default=32, help="images are resized to this")
    net.add_argument("--mean", type=float, nargs=3, help="default: computed from the data")
    net.add_argument("--std", type=float, nargs=3, help="default: computed from the data")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=200)
    opt.add_argument("--batch-size", type=int, default=128, help="per process")
    opt.add_argument("--lr", type=float, default=0.1, help="per process (× world size)")
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--weight-decay", type=float, default=1e-4)
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    opt.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke tests)")
    opt.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    adv = p.add_argument_group("adversarial training")
    adv.add_argument("--adversarial", choices=["l2", "l2min"])
    adv.add_argument("--adv-eps", type=float, help="default 0.01 (l2) or 0.1 (l2min)")
    adv.add_argument("--adv-steps", type=int, default=7)
    rob = p.add_argument_group("robust additions")
    rob.add_argument("--robust", action="store_true", help="gradient penalty + HHReLU")
    rob.add_argument("--zeta", type=float, default=0.2)
    rob.add_argument("--z", type=float, default=2.0)
    rob.add_argument("--psi0", type=float, default=220.0)
    rob.add_argument("--psi-k", type=float, default=0.02)
    rob.add_argument("--target-loss", type=float, default=1.5)
    rob.add_argument("--psi-up", type=float, default=1.0)
    rob.add_argument("--psi-down", type=float, default=-0.01)
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, help="run folder (state, log); default runs/NAME")
    out.add_argument("--resume", action="store_true", help="continue the run in --out")
    out.add_argument("--name", help="register the result in the model registry under NAME")
    out.add_argument("--alias", action="append", default=[], help="registry alias (repeatable)")
    out.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    out.add_argument("--ara-images", type=int, default=0, help="ARA on N test images at the end")
    out.add_argument("--ara-steps", type=int, default=450)
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import torch

    from aex.models.training import TrainConfig, load_training_data, run_training

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.name and not args.out:
        raise ValueError("give --name (to register the model) or --out (a run folder)")
    out = args.out or Path("runs") / args.name
    config = TrainConfig(
        arch=args.arch, arch_kwargs={"widths": args.widths} if args.widths else {},
        act=args.act, input_size=args.input_size, mean=args.mean, std=args.std,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, seed=args.seed, adversarial=args.adversarial,
        adv_eps=args.adv_eps, adv_steps=args.adv_steps, robust=args.robust, zeta=args.zeta,
        z=args.z, psi0=args.psi0, psi_k=args.psi_k, target_loss=args.target_loss,
        psi_up=args.psi_up, psi_down=args.psi_down, amp=args.amp, max_batches=args.max_batches,
    ).resolved()
    train, test = load_training_data(args.data, args.train_dir, args.test_dir, args.dataset,
                                     args.input_size, args.cache_dir)
    if train.skipped:
        print(f"skipped {train.skipped} training files that could not be decoded")
    result = run_training(
        config, train, test, out, name=args.name, resume=args.resume,
        ara_images=args.ara_images, ara_steps=args.ara_steps, store=model_store(args),
        aliases=args.alias, show_progress=not args.no_progress,
        command="aex " + shlex.join(args.argv),
    )
    if result.entry is not None or result.metrics:
        print(json.dumps({"name": args.name, "run": str(out), **result.metrics}, indent=2))
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="accuracy and ARA of a model on an ImageFolder tree")
    p.add_argument("model", help="registry name/alias or a checkpoint path (.json/.safetensors)")
    p.add_argument("--data", type=Path, required=True, help="ImageFolder tree (e.g. test/)")
    p.add_argument("--n-images", type=int, default=1000,
                   help="evaluate the first N of a permutation seeded with 1776 (all: 10000+)")
    p.add_argument("--steps", type=int, default=450, help="routine steps for ARA")
    p.add_argument("--eps", type=float, default=20.0, help="routine budget for ARA")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--fast", action="store_true", help="the cheaper ARA settings")
    p.add_argument("--no-ara", action="store_true", help="accuracy only")
    p.add_argument("--no-strict", action="store_true",
                   help="warn instead of failing when an image's goal is met late or never "
                        "(those never defeated within the budget are counted as censored)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--plot", type=Path, help="write the accuracy curves to this PNG")
    p.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    p.add_argument("--save-metrics", action="store_true",
                   help="write the results into the checkpoint's metadata (the accuracy "
                        "only when measured on the whole folder), and the curves into "
                        "<registry>/<name>.ara.png (shown on the model page)")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    report = evaluate_command(args, model_store(args))
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def evaluate_command(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    """``aex evaluate``: accuracy and ARA on the seeded subset of ``--n-images`` images."""
    from aex.models import (
        COARSE_RELATIVE_RESOLUTION,
        FAST_SETTINGS,
        REFERENCE_SETTINGS,
        ImageSet,
        ara,
        evaluate_accuracy,
        evaluation_indices,
        load_checkpoint,
        load_image_folder,
        update_metrics,
    )
    from aex.models.render import plot_curves

    if not re.fullmatch(r"cpu|cuda(:[0-9]{1,2})?", args.device):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    loaded = load_checkpoint(args.model, store=store, device=args.device)
    size = loaded.input_size[0]
    data = load_image_folder(args.data, size)
    if data.classes != loaded.classes:
        raise ValueError(
            f"the data's classes {data.classes} differ from the model's {loaded.classes}"
        )
    idx = evaluation_indices(len(data), args.n_images)
    subset = ImageSet(data.images[idx], data.labels[idx], data.classes)
    report: dict[str, Any] = {
        "model": loaded.name,
        "accuracy": evaluate_accuracy(loaded.model, subset),
        "n_images": len(subset),
    }
    if not args.no_ara:
        settings = dict(FAST_SETTINGS) if args.fast else {
            **REFERENCE_SETTINGS, "eps": args.eps, "steps": args.steps}
        results = []
        for mode, key in (("l2min", "ara_attack"), ("btr", "ara_btr")):
            with _progress_bar(f"{key} on {len(subset)} images",
                               enabled=not args.no_progress) as progress:
                res = ara(loaded.model, subset.floats(), subset.labels, mode=mode,
                          batch_size=args.batch_size, progress=progress,
                          strict=not args.no_strict, **settings)
            report[key] = res.value
            report[f"{key}_censored"] = res.censored
            results.append(res)
            if res.relative_resolution > COARSE_RELATIVE_RESOLUTION:
                log.warning(
                    "%s ARA: the routine's last step (%.2g) is %.0f%% of the median radius; "
                    "the value is coarse for this model: %s", mode, res.resolution,
                    100 * res.relative_resolution,
                    "use the reference settings (drop --fast)" if args.fast
                    else "raise --steps")
        report["ara_settings"] = settings
        if args.plot:
            plot_curves(results, str(args.plot), title=loaded.name)
    if args.save_metrics:
        update_metrics(loaded.name, _metrics_to_save(report, len(data)), store=store)
        if not args.no_ara:
            plot_curves(results, str(store.get(loaded.name).ara_plot_path), title=loaded.name)
    return report


@contextmanager
def _progress_bar(description: str, enabled: bool
                  ) -> Iterator[Callable[[float], None] | None]:
    """A percentage bar on stderr fed by the routine's progress fractions."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=100, desc=description, unit="%", bar_format="{l_bar}{bar}| "
              "{n:.0f}% [{elapsed}<{remaining}]") as bar:
        def update(fraction: float) -> None:
            bar.update(max(0.0, 100 * fraction - bar.n))

        yield update


def _metrics_to_save(report: dict[str, Any], n_data: int) -> dict[str, Any]:
    """The metadata keys that ``aex train`` writes, from an ``aex evaluate`` report.

    The test accuracy (``accuracy``, ``n_test``) is replaced only by one measured on the
    whole folder; ARA values are saved with the number of images they were measured on.
    """
    saved: dict[str, Any] = {}
    if report["n_images"] == n_data:
        saved.update(accuracy=report["accuracy"], n_test=n_data)
    else:
        log.info("accuracy not saved: measured on %d of the %d images (--n-images %d "
                 "measures all)", report["n_images"], n_data, n_data)
    if "ara_btr" in report:
        saved.update(ara_attack=report["ara_attack"], ara_btr=report["ara_btr"],
                     ara_attack_censored=report["ara_attack_censored"],
                     ara_btr_censored=report["ara_btr_censored"],
                     ara_images=report["n_images"], ara_settings=report["ara_settings"])
    return saved
