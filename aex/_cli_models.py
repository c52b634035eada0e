"""``aex models ...``, ``aex train`` and ``aex evaluate``: the science from the command line."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any


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
    from models import ModelStore

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
    from models import import_reference

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

    from models.training import TrainConfig, load_training_data, run_training

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
    p.add_argument("--fast", action="store_true", help="the cheaper ARA settings")
    p.add_argument("--no-ara", action="store_true", help="accuracy only")
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
    from models._ara import evaluate_command

    report = evaluate_command(args, model_store(args))
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0
