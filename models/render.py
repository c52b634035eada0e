"""Render images, explanations and heat maps as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from ._ara import ARAResult

DISPLAY_MIN = 128


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` → ``(H, W, C)`` uint8 (clipped)."""
    if x.dim() != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(x.shape)}")
    arr = x.detach().float().cpu().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def image_png(x: torch.Tensor) -> bytes:
    """An image ``(C, H, W)`` in ``[0, 1]`` as PNG bytes, at its own size."""
    return _png(Image.fromarray(_to_uint8(x)))


HEAT_ALPHA = 0.55
HEAT_COLORMAP = "inferno"
DIFFERENCE_FORMULA = "round(255 * clip(0.5 + 0.5 * value / vmax, 0, 1)), channels last"
HEAT_FORMULA = (f"round(255 * clip({1 - HEAT_ALPHA:g} * input + {HEAT_ALPHA:g} * "
                f"{HEAT_COLORMAP}(clip(value / vmax, 0, 1))[RGB], 0, 1)), input = input.png / 255")


def signed_difference(delta: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Map a perturbation to ``[0, 1]``: grey is no change, brighter/darker is ± change of
    ``scale`` (default: the largest ``|δ|``, so each map uses its own scale)."""
    top = float(delta.detach().abs().max()) if scale is None else float(scale)
    return 0.5 + 0.5 * delta.detach() / max(top, 1e-12)


def difference_png(delta: torch.Tensor, scale: float | None = None) -> bytes:
    """A signed difference map of ``δ`` ``(C, H, W)`` as PNG bytes (see
    :func:`signed_difference`; :data:`DIFFERENCE_FORMULA` with ``vmax = scale``)."""
    return image_png(signed_difference(delta, scale))


def colorize(heat: torch.Tensor, cmap: str = HEAT_COLORMAP) -> torch.Tensor:
    """A heat map ``(H, W)`` in ``[0, 1]`` → an RGB image ``(3, H, W)``."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](heat.detach().float().cpu().clamp(0, 1).numpy())
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def heatmap_png(x: torch.Tensor, heat: torch.Tensor, alpha: float = HEAT_ALPHA,
                vmax: float | None = None) -> bytes:
    """A heat map ``(H, W)`` over its image ``(C, H, W)`` as PNG bytes; ``heat`` is in
    ``[0, 1]``, or in ``[0, vmax]`` when ``vmax`` is given (:data:`HEAT_FORMULA`)."""
    base = x.detach().float().cpu()
    if base.shape[0] == 1:
        base = base.expand(3, -1, -1)
    if vmax is not None:
        heat = heat.detach().float().cpu() / max(float(vmax), 1e-30)
    overlay = (1 - alpha) * base + alpha * colorize(heat)
    return image_png(overlay)


def colorbar_png(bars: Sequence[tuple[str, str, float, float]], width: int = 256) -> bytes:
    """Colour bars as PNG bytes, one per ``(label, colormap, vmin, vmax)``: the colormap
    ``"signed"`` is the grey scale of :func:`signed_difference`, any other a matplotlib
    colormap; each bar is labelled with its quantity and the values at both ends."""
    if not bars:
        raise ValueError("colorbar_png needs at least one bar")
    font = ImageFont.load_default()
    bar_h, text_h, pad = 14, 12, 4
    row_h = text_h + bar_h + text_h + pad
    canvas = Image.new("RGB", (width + 2 * pad, pad + row_h * len(bars)), "white")
    draw = ImageDraw.Draw(canvas)
    ramp = torch.linspace(0, 1, width)
    for n, (label, cmap, vmin, vmax) in enumerate(bars):
        if cmap == "signed":
            row = ramp.view(1, 1, -1).expand(3, bar_h, -1)
        else:
            row = colorize(ramp.view(1, -1).expand(bar_h, -1), cmap)
        top = pad + n * row_h
        draw.text((pad, top), label, fill="black", font=font)
        canvas.paste(Image.fromarray(_to_uint8(row)), (pad, top + text_h))
        low, high = f"{vmin:.3g}", f"{vmax:.3g}"
        draw.text((pad, top + text_h + bar_h), low, fill="black", font=font)
        right = pad + width - int(draw.textlength(high, font=font))
        draw.text((right, top + text_h + bar_h), high, fill="black", font=font)
    return _png(canvas)


def stack_png(*pictures: bytes) -> bytes:
    """PNG pictures one above the other, left-aligned on white, as one PNG."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pictures]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)),
                       "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    return _png(canvas)


def change_label(name: str, before: float, after: float) -> str:
    """A grid label for a class whose probability went from ``before`` to ``after``
    (ASCII: the grid's built-in font has no arrow glyph)."""
    return f"{name} {before:.2f}->{after:.2f}"


def grid_png(tiles: Sequence[torch.Tensor], labels: Sequence[str], columns: int = 6,
             tile_size: int | None = None) -> bytes:
    """Tiles ``(C, H, W)`` in ``[0, 1]`` in a labelled grid, upscaled for viewing."""
    if not tiles:
        raise ValueError("grid_png needs at least one tile")
    if len(labels) != len(tiles):
        raise ValueError("one label per tile")
    h, w = tiles[0].shape[-2:]
    scale = max(1, (tile_size or DISPLAY_MIN) // max(h, w))
    tw, th = w * scale, h * scale
    font = ImageFont.load_default()
    label_h = 14 * max(1, max(label.count("\n") + 1 for label in labels))
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    pad = 4
    canvas = Image.new("RGB", (columns * (tw + pad) + pad, rows * (th + label_h + pad) + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        r, c = divmod(i, columns)
        img = Image.fromarray(_to_uint8(tile)).convert("RGB")
        img = img.resize((tw, th), Image.Resampling.NEAREST)
        x0, y0 = pad + c * (tw + pad), pad + r * (th + label_h + pad)
        canvas.paste(img, (x0, y0))
        draw.multiline_text((x0, y0 + th + 1), label, fill="black", font=font, spacing=1)
    return _png(canvas)


def plot_curves(results: list[ARAResult], path: str | Path, title: str = "") -> None:
    """Draw accuracy against perturbation size for each result into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for res in results:
        label = {"l2min": "attack", "btr": "BTR"}[res.mode]
        ax.plot(res.curve_r.numpy(), res.curve_accuracy.numpy(),
                label=f"{label} (ARA {res.value:.4f})")
    if results:
        ax.axhline(1.0 / results[0].num_classes, color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("perturbation size (RMS)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
