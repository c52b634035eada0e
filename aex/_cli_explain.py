"""``aex explain``: adversarial explanations of image files, in this process (no service).

Images are decoded and resized exactly as the service decodes uploads; ``--out`` writes
one grid PNG with a row per image (the input, then the image changed toward each target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``aex explain`` to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser("explain", help="explain image files with a model, in this process")
    p.add_argument("model", help="registry name/alias or a checkpoint path (.json/.safetensors)")
    p.add_argument("images", nargs="+", type=Path, help="PNG, JPEG or WebP files")
    p.add_argument("--targets", default="all",
                   help="all, predicted, second, or class names/indices (cat,dog,3)")
    p.add_argument("--rho", type=float, default=0.1, help="RMS budget of each change")
    p.add_argument("--steps", type=int, default=35, help="routine steps")
    p.add_argument("--out", type=Path, help="write the explanations as one grid PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model-dir", type=Path, help="registry folder (default $AEX_MODEL_DIR)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.set_defaults(func=_explain)


def _read_image(path: Path, loaded: Any) -> tuple[Any, bool]:
    """One image file as the model's input, decoded as the service decodes an upload."""
    from aex.contract.imaging import decode_for_model
    from aex.contract.settings import Settings
    from aex.models import image_tensor

    try:
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise ValueError(f"{path} is a folder; give image files") from exc
    try:
        prepared = decode_for_model(data, loaded.input_size, loaded.channels,
                                    Settings().max_pixels)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return image_tensor(prepared.image).to(loaded.device), prepared.resized


def _explain(args: argparse.Namespace) -> int:
    import torch

    from aex.contract.targets import resolve_targets
    from aex.models import AdversarialExplainer, load_checkpoint
    from aex.models.render import change_label, grid_png

    from ._cli_models import model_store

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_checkpoint(args.model, store=model_store(args), device=device)
    targets = resolve_targets(args.targets, loaded.classes)
    decoded = [_read_image(path, loaded) for path in args.images]
    x = torch.stack([tensor for tensor, _ in decoded])
    classes = loaded.classes
    exp = AdversarialExplainer(loaded.model, classes).explain(
        x, targets=targets, rho=args.rho, steps=args.steps)
    report: list[dict[str, Any]] = []
    tiles: list[Any] = []
    labels: list[str] = []
    for i, path in enumerate(args.images):
        top = int(exp.probs[i].argmax())
        rows = (exp.image_index == i).nonzero()[:, 0].tolist()
        tiles.append(x[i])
        labels.append(f"{classes[top]} {float(exp.probs[i, top]):.2f}")
        explained = []
        for t in rows:
            index = int(exp.target_index[t])
            before, after = float(exp.prob_before[t]), float(exp.prob_after[t])
            tiles.append(exp.images[t])
            labels.append(change_label(classes[index], before, after))
            explained.append({"class": classes[index], "index": index,
                              "probability_before": before, "probability_after": after,
                              "perturbation_rms": float(exp.perturbation_rms[t])})
        report.append({"image": str(path), "resized": decoded[i][1],
                       "predicted": {"class": classes[top], "index": top,
                                     "probability": float(exp.probs[i, top])},
                       "targets": explained})
    if args.out:
        columns = max(1, len(tiles) // len(args.images))
        args.out.write_bytes(grid_png(tiles, labels, columns=columns))
    if args.json:
        print(json.dumps({"model": loaded.name, "rho": args.rho, "steps": args.steps,
                          "images": report, "warnings": list(exp.warnings),
                          "grid": str(args.out) if args.out else None}))
        return 0
    for item in report:
        p = item["predicted"]
        print(f"{item['image']}: {p['class']} {p['probability']:.3f}"
              f"{' (resized to the model input)' if item['resized'] else ''}")
        for t in item["targets"]:
            print(f"  toward {t['class']}: {t['probability_before']:.3f} → "
                  f"{t['probability_after']:.3f}, change RMS {t['perturbation_rms']:.4f}")
    for warning in exp.warnings:
        print(f"warning: {warning}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
