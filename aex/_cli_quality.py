"""``aex benchmark-explainers``: which explanation to trust, measured (aex.models.quality)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

from ._cli_models import _progress_bar, model_store

RECORDS = "records.jsonl"


def _methods(given: list[str] | None) -> list[str]:
    """``--methods`` checked against the contract's explanation methods (all when None)."""
    from aex.contract.jobs import EXPLAIN_METHODS

    unknown = [m for m in given or [] if m not in EXPLAIN_METHODS]
    if unknown:
        raise SystemExit(f"aex benchmark-explainers: unknown method {', '.join(unknown)}; "
                         f"choose from {', '.join(EXPLAIN_METHODS)}")
    return list(given or EXPLAIN_METHODS)


def register(sub: Any) -> None:
    """Add ``benchmark-explainers`` to ``sub``."""
    p = sub.add_parser(
        "benchmark-explainers",
        help="compare the adversarial explanation with the heat maps: deletion/insertion, "
             "infidelity, max-sensitivity, randomisation check, counterfactual validity",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="registry name/alias or a checkpoint path (.json/.safetensors)")
    p.add_argument("--data", type=Path, required=True, help="ImageFolder tree (e.g. test/)")
    p.add_argument("--n-images", type=int, default=100,
                   help="the first N of the permutation seeded with 1776 (as aex evaluate)")
    # checked when the command runs: the method names live in the contract, which needs
    # pydantic, and the parser must build in a client-only install
    p.add_argument("--methods", nargs="+", default=None,
                   help="methods to compare, of adversarial, saliency, integrated_gradients, "
                        "smoothgrad, gradcam (default: all; a random ranking is always added "
                        "as a baseline)")
    p.add_argument("--chunk-size", type=int, default=10, help="images per step (and per save)")
    p.add_argument("--replacement", choices=["blur", "noise"], default="blur",
                   help="what deleted pixels become")
    p.add_argument("--sanity-images", type=int, default=8,
                   help="images of the randomisation check")
    p.add_argument("--sensitivity-samples", type=int, default=4)
    p.add_argument("--sensitivity-images", type=int, default=20,
                   help="max-sensitivity on the first N images (it costs 5 maps per image)")
    p.add_argument("--infidelity-samples", type=int, default=16)
    p.add_argument("--out", type=Path, help="report folder: report.json, report.md, curves.png "
                                            "and the per-chunk records a rerun resumes from")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    p.add_argument("--save-metrics", action="store_true",
                   help="write the figures, with their settings and image count, into the "
                        "checkpoint's metadata (metrics.explainers; shown in its card)")
    p.set_defaults(func=_benchmark)


def _fingerprint(sha256: str, data: Path, n_images: int, chunk_size: int,
                 settings: dict[str, Any]) -> str:
    """What a saved record must match to be reused: the weights, images and settings."""
    text = json.dumps([sha256, str(data.resolve()), n_images, chunk_size, settings],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_records(path: Path, fingerprint: str) -> list[Any]:
    """The saved records of a run with this fingerprint (unreadable lines are skipped)."""
    from aex.models.quality import MethodRecord

    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            saved = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
            try:
                records.append(MethodRecord(**saved["record"]))
            except TypeError:  # written by another version: measured again
                continue
    return records


def _benchmark(args: argparse.Namespace) -> int:
    report = benchmark_command(args)
    if args.json:
        print(json.dumps(report))
    else:
        from aex.models.quality import markdown_table

        print(f"{report['model']}: {report['n_images']} images, {report['seconds']:.0f} s")
        print(markdown_table(report["rows"]), end="")
    return 0


def benchmark_command(args: argparse.Namespace) -> dict[str, Any]:
    """``aex benchmark-explainers``: the report (and its files under ``--out``)."""
    import torch

    from aex.models import ImageSet, evaluation_indices, load_checkpoint, load_image_folder
    from aex.models.quality import (
        BASELINE,
        QualitySettings,
        markdown_table,
        metrics_summary,
        plot_quality_curves,
        run_benchmark,
        summarise,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    store = model_store(args)
    loaded = load_checkpoint(args.model, store=store)
    data = load_image_folder(args.data, loaded.input_size[0])
    if data.classes != loaded.classes:
        raise ValueError(
            f"the data's classes {data.classes} differ from the model's {loaded.classes}")
    idx = evaluation_indices(len(data), args.n_images)
    subset = ImageSet(data.images[idx], data.labels[idx], data.classes)
    settings = QualitySettings(replacement=args.replacement, sanity_images=args.sanity_images,
                               sensitivity_samples=args.sensitivity_samples,
                               sensitivity_images=args.sensitivity_images,
                               infidelity_samples=args.infidelity_samples)
    methods = [*dict.fromkeys(_methods(args.methods)), BASELINE]
    fingerprint = _fingerprint(str(loaded.meta.get("sha256", loaded.name)),
                               args.data, len(subset), args.chunk_size, settings.as_dict())
    done: list[Any] = []
    save = None
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        records_path = args.out / RECORDS
        done = _load_records(records_path, fingerprint)

        def save(record: Any) -> None:
            with records_path.open("a") as file:
                file.write(json.dumps({"fingerprint": fingerprint,
                                       "record": record.as_dict()}) + "\n")

    x = subset.floats().to(loaded.device)
    with _progress_bar(f"{loaded.name}: {len(methods)} methods on {len(subset)} images",
                       enabled=not args.no_progress) as progress:
        records = run_benchmark(loaded.model, x, methods, settings, args.chunk_size,
                                done=done, on_record=save, progress=progress)
    rows = summarise(records)
    report: dict[str, Any] = {
        "model": loaded.name,
        "n_images": len(subset),
        "methods": methods,
        "settings": {**settings.as_dict(), "chunk_size": args.chunk_size,
                     "evaluation_seed": 1776, "targets": "the predicted class"},
        "rows": rows,
        "seconds": time.perf_counter() - began,
        "resumed_chunks": len(done),
        "command": "aex " + shlex.join(args.argv),
    }
    if args.out:
        (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "report.md").write_text(
            f"# {loaded.name}: {len(subset)} images\n\n`{report['command']}`\n\n"
            + markdown_table(rows))
        plot_quality_curves(rows, str(args.out / "curves.png"),
                            title=f"{loaded.name}, {len(subset)} images")
    if args.save_metrics:
        from aex.models import update_metrics

        update_metrics(loaded.name, {"explainers": metrics_summary(rows, report["settings"])},
                       store=store)
    return report
