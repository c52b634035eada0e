"""Which explanation to trust, measured: explanation-quality metrics.

Every measure takes a model that maps ``[0, 1]`` images ``(B, C, H, W)`` to logits and an
attribution map per image, ``(B, H, W)``, non-negative (bigger: more important):

- :func:`deletion_insertion`: the target probability as the most important pixels are
  replaced by a version of the image that carries no class evidence (blurred, or blurred
  plus noise; never black, so the curve measures the model and not the mask), and as they
  are put back into that version (Petsiuk et al., RISE, 2018). Lower deletion area and
  higher insertion area are better.
- :func:`infidelity` and :func:`max_sensitivity`: Captum's ``infidelity`` and
  ``sensitivity_max`` (Yeh et al., 2019); lower is better for both.
- :func:`cascading_randomisation`: the model-parameter randomisation sanity check
  (Adebayo et al., 2018): the rank correlation between a method's map on the trained
  network and on copies whose parameterised layers are randomised from the top down. A
  method whose map barely changes when the whole network is randomised is flagged.
- :func:`counterfactual_validity`: for adversarial explanations, the share of (image,
  target) pairs whose target probability rises and whose prediction becomes the target,
  and the median size of the change.

:func:`attribution_maps` gives every method's map (the adversarial explanation's is
``|δ|`` summed over channels); :func:`benchmark_chunk` runs all measures on a batch,
:func:`run_benchmark` runs them chunk by chunk over a run's images (resuming from saved
records), :func:`summarise` turns the records into the table (:func:`markdown_table`,
:func:`plot_quality_curves`) and :func:`metrics_summary` into the figures a model's
metadata keeps.

Example::

    maps = attribution_maps(model, x, target, "saliency")
    curves = deletion_insertion(model, x, target, maps)
    curves.deletion_area.mean(), curves.insertion_area.mean()
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._classic import CLASSIC_METHODS, ClassicExplainer
from ._perturb import check_images, frozen, perturb

METHODS: tuple[str, ...] = ("adversarial", *CLASSIC_METHODS)
BASELINE = "random"
SANITY_THRESHOLD = 0.5
Replacement = Literal["blur", "noise"]
MapFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class QualitySettings:
    """Every setting of the measures, recorded with their results.

    Attributes:
        rho, steps, overshoot: the adversarial explanation (method.md §4: 0.1, 35, 5).
        ig_steps, smooth_samples, smooth_sigma: the classic methods (as the service runs them).
        curve_steps: points of the deletion and insertion curves after the first.
        replacement: ``"blur"`` (Gaussian blur, σ = ``blur_sigma`` pixels) or ``"noise"``
            (the blur plus Gaussian noise of σ = ``noise_sigma``, seeded).
        infidelity_sigma, infidelity_samples: Gaussian input noise of infidelity.
        sensitivity_radius, sensitivity_samples: the L∞ radius and samples of max-sensitivity.
        sensitivity_images: max-sensitivity runs on the chunks that start before this image
            (it costs ``sensitivity_samples + 1`` maps per image).
        sanity_images: images (the first of each run) of the randomisation check.
        seed: seeds the random ranking, the noise and the randomised weights.
    """

    rho: float = 0.1
    steps: int = 35
    overshoot: float = 5.0
    ig_steps: int = 32
    smooth_samples: int = 16
    smooth_sigma: float = 0.15
    curve_steps: int = 32
    replacement: Replacement = "blur"
    blur_sigma: float = 4.0
    noise_sigma: float = 0.1
    infidelity_sigma: float = 0.05
    infidelity_samples: int = 16
    sensitivity_radius: float = 0.02
    sensitivity_samples: int = 4
    sensitivity_images: int = 20
    sanity_images: int = 8
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON data."""
        return asdict(self)


def attribution_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str,
                     settings: QualitySettings = QualitySettings(),
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image's map ``(B, H, W)``, non-negative, for ``target`` ``(B,)``.

    ``method`` is ``"adversarial"`` (``|δ|`` of the explanation toward the target, summed
    over channels), one of the classic methods (:class:`ClassicExplainer`'s heat map) or
    ``"random"`` (uniform noise from ``generator``: the baseline ranking).
    """
    check_images(x)
    if method == BASELINE:
        return torch.rand(x.shape[0], *x.shape[-2:], generator=generator).to(x.device)
    if method == "adversarial":
        result = perturb(model, x, target.to(x.device), mode="encourage", eps=settings.rho,
                         steps=settings.steps, overshoot=settings.overshoot, clip=True)
        return result.delta.abs().sum(1)
    if method not in CLASSIC_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of "
                         f"{', '.join((*METHODS, BASELINE))}")
    explainer = ClassicExplainer(model, method, ig_steps=settings.ig_steps,
                                 smooth_samples=settings.smooth_samples,
                                 smooth_sigma=settings.smooth_sigma)
    with torch.enable_grad():
        return explainer.attribute(x, target)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, C, H, W)`` images, σ in pixels, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def replacement_images(x: torch.Tensor, settings: QualitySettings,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """What a deleted pixel becomes: the blurred image, with noise for ``"noise"``."""
    blurred = blur(x, settings.blur_sigma)
    if settings.replacement == "noise":
        noise = torch.randn(x.shape, generator=generator).to(x.device) * settings.noise_sigma
        blurred = blurred + noise
    elif settings.replacement != "blur":
        raise ValueError(f"replacement must be 'blur' or 'noise', got {settings.replacement!r}")
    return blurred.clamp(0, 1)


@dataclass
class Curves:
    """Deletion and insertion curves of a batch.

    Attributes:
        fractions: ``(K + 1,)`` share of pixels replaced (deletion) or restored (insertion).
        deletion, insertion: ``(B, K + 1)`` the target probability at each fraction.
        deletion_area, insertion_area: ``(B,)`` trapezoid areas under them.
    """

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_area(self) -> torch.Tensor:
        return torch.trapezoid(self.deletion, self.fractions, dim=1)

    @property
    def insertion_area(self) -> torch.Tensor:
        return torch.trapezoid(self.insertion, self.fractions, dim=1)


def deletion_insertion(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                       maps: torch.Tensor, settings: QualitySettings = QualitySettings(),
                       generator: torch.Generator | None = None) -> Curves:
    """Deletion and insertion curves of ``maps`` ``(B, H, W)`` on ``x`` for ``target``.

    Pixels are ranked by their map value (ties in index order) and replaced, or restored, in
    ``curve_steps`` equal groups; all channels of a pixel move together.
    """
    check_images(x)
    b, _, h, w = x.shape
    if maps.shape != (b, h, w):
        raise ValueError(f"maps must have shape {(b, h, w)}, got {tuple(maps.shape)}")
    k = settings.curve_steps
    if k < 1:
        raise ValueError(f"curve_steps must be ≥ 1, got {k}")
    fill = replacement_images(x, settings, generator)
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    rank = rank.view(b, 1, h, w)
    counts = [round(i * h * w / k) for i in range(k + 1)]
    target = target.to(x.device)
    deletion, insertion = [], []
    with frozen(model), torch.no_grad():
        for n in counts:
            chosen = (rank < n).to(x.dtype)
            deleted = x * (1 - chosen) + fill * chosen
            inserted = fill * (1 - chosen) + x * chosen
            probs = model(torch.cat([deleted, inserted])).softmax(1)
            p = probs.gather(1, target.repeat(2)[:, None])[:, 0]
            deletion.append(p[:b])
            insertion.append(p[b:])
    fractions = torch.tensor([n / (h * w) for n in counts], device=x.device)
    return Curves(fractions, torch.stack(deletion, 1), torch.stack(insertion, 1))


def _as_inputs(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``(B, H, W)`` map spread over the channels, shaped like ``x``."""
    return (maps / x.shape[1]).unsqueeze(1).expand_as(x)


def infidelity(model: nn.Module, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
               settings: QualitySettings = QualitySettings(),
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Captum's infidelity ``(B,)`` of ``maps`` for the target logit, with Gaussian input
    noise of σ = ``infidelity_sigma`` and the map's best scale (``normalize=True``)."""
    from captum.metrics import infidelity as captum_infidelity

    sigma = settings.infidelity_sigma

    def noise(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found = torch.randn(inputs.shape, generator=generator).to(inputs.device) * sigma
        return found, inputs - found

    with frozen(model), torch.no_grad():
        return captum_infidelity(model, noise, x, _as_inputs(maps, x),
                                 target=target.to(x.device),
                                 n_perturb_samples=settings.infidelity_samples,
                                 normalize=True).detach()


def max_sensitivity(map_fn: MapFn, x: torch.Tensor, target: torch.Tensor,
                    settings: QualitySettings = QualitySettings()) -> torch.Tensor:
    """Captum's max-sensitivity ``(B,)``: the largest relative change of the map
    (Frobenius norm) over ``sensitivity_samples`` inputs within L∞ radius
    ``sensitivity_radius`` (clipped to ``[0, 1]``).

    ``map_fn(inputs, target=...)`` returns the maps ``(B, H, W)``.
    """
    from captum.metrics import sensitivity_max

    def explain(inputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor
                ) -> tuple[torch.Tensor]:
        images = inputs[0] if isinstance(inputs, tuple) else inputs
        if target.numel() != images.shape[0]:  # Captum leaves a batch of one unexpanded
            target = target.reshape(-1).repeat_interleave(images.shape[0] // target.numel())
        with torch.enable_grad():
            return (map_fn(images.clamp(0, 1), target=target),)

    return sensitivity_max(explain, x, perturb_radius=settings.sensitivity_radius,
                           n_perturb_samples=settings.sensitivity_samples,
                           target=target.to(x.device)).detach()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps ``(B, ...)`` → ``(B,)``.

    A constant map correlates 1 with another constant map and 0 with anything else.
    """
    def ranks(v: torch.Tensor) -> torch.Tensor:
        flat = v.flatten(1).double()
        return flat.argsort(1).argsort(1).double()

    ra, rb = ranks(a), ranks(b)
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    const_a = flat_a.amax(1) == flat_a.amin(1)
    const_b = flat_b.amax(1) == flat_b.amin(1)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)
    rho = (ra * rb).sum(1) / denom
    rho = torch.where(const_a | const_b, (const_a & const_b).double(), rho)
    return rho.float()


def parameterised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, from the output back to the input
    (reverse registration order, which is the forward order of the project's networks)."""
    names = [name for name, module in model.named_modules()
             if any(True for _ in module.parameters(recurse=False))]
    return names[::-1]


def randomised_copy(model: nn.Module, layers: Sequence[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose ``layers`` have every parameter tensor redrawn from a
    normal distribution with that tensor's trained mean and standard deviation (so scales
    stay, learned structure goes); buffers (input normalisation, BatchNorm statistics) stay.
    """
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in layers:
            for p in modules[name].parameters(recurse=False):
                flat = p.detach().flatten().double()
                std = float(flat.std()) if flat.numel() > 1 else abs(float(flat[0]))
                mean = float(flat.mean())
                draw = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.copy_((mean + std * draw).to(p))
    return clone


def cascade_stages(n_layers: int) -> list[int]:
    """How many top layers each stage randomises: the top one, a quarter, half, all."""
    if n_layers < 1:
        raise ValueError("the model has no parameterised layers to randomise")
    return sorted({1, math.ceil(n_layers / 4), math.ceil(n_layers / 2), n_layers})


@dataclass
class Randomisation:
    """The cascading randomisation check of one method on a batch.

    Attributes:
        stages: how many top layers each stage randomised.
        top_layers: the name of the deepest layer randomised at each stage.
        correlation: ``(S, B)`` Spearman correlation with the trained network's maps.
    """

    stages: list[int]
    top_layers: list[str]
    correlation: torch.Tensor

    @property
    def flagged(self) -> bool:
        """True when the map barely changes with the whole network randomised."""
        return float(self.correlation[-1].mean()) >= SANITY_THRESHOLD


def cascading_randomisation(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                            map_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                             torch.Tensor],
                            seed: int = 0, trained_maps: torch.Tensor | None = None
                            ) -> Randomisation:
    """Randomise the parameterised layers from the top down (:func:`cascade_stages`) and
    compare each method's map with the trained network's by rank correlation.

    ``map_fn(model, x, target)`` returns the maps ``(B, H, W)``.
    """
    layers = parameterised_layers(model)
    stages = cascade_stages(len(layers))
    trained = map_fn(model, x, target) if trained_maps is None else trained_maps
    rows = []
    for n in stages:
        rows.append(rank_correlation(trained, map_fn(randomised_copy(model, layers[:n], seed),
                                                     x, target)))
    return Randomisation(stages, [layers[n - 1] for n in stages], torch.stack(rows))


@dataclass
class Counterfactual:
    """Adversarial explanations toward ``target``, as counterfactuals.

    Attributes:
        rises: ``(B,)`` the target probability rose.
        became_target: ``(B,)`` the prediction on ``x + δ`` is the target.
        perturbation_rms: ``(B,)`` ``rms(δ)``.
        prob_before, prob_after: ``(B,)`` the target probability on ``x`` and ``x + δ``.
        sane: ``(B,)`` the routine's sanity check (method.md §3).
    """

    rises: torch.Tensor
    became_target: torch.Tensor
    perturbation_rms: torch.Tensor
    prob_before: torch.Tensor
    prob_after: torch.Tensor
    sane: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """``(B,)`` the probability rose and the prediction became the target."""
        return self.rises & self.became_target


def counterfactual_validity(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                            settings: QualitySettings = QualitySettings()) -> Counterfactual:
    """Run the adversarial explanation toward ``target`` ``(B,)`` and check it as a
    counterfactual (the shown image, clipped to ``[0, 1]``, as the service shows it)."""
    target = target.to(x.device)
    result = perturb(model, x, target, mode="encourage", eps=settings.rho,
                     steps=settings.steps, overshoot=settings.overshoot, clip=True)
    with frozen(model), torch.no_grad():
        before = model(x).softmax(1)
        after = model(result.x_adv).softmax(1)
    p_before = before.gather(1, target[:, None])[:, 0]
    p_after = after.gather(1, target[:, None])[:, 0]
    return Counterfactual(rises=p_after > p_before, became_target=after.argmax(1) == target,
                          perturbation_rms=result.rms, prob_before=p_before,
                          prob_after=p_after, sane=result.sane)


def targets_for(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes measured: the prediction (what the maps explain) and the second most
    likely class (the counterfactual target)."""
    with frozen(model), torch.no_grad():
        top = model(x).topk(2, dim=1).indices
    return top[:, 0], top[:, 1]


@dataclass
class MethodRecord:
    """One method's per-image measures on one chunk of images (JSON-ready lists)."""

    method: str
    start: int
    n_images: int
    seconds_maps: float
    seconds_total: float
    deletion: list[list[float]]
    insertion: list[list[float]]
    fractions: list[float]
    infidelity: list[float] | None = None
    sensitivity: list[float] | None = None
    sanity_stages: list[int] | None = None
    sanity_layers: list[str] | None = None
    sanity_correlation: list[list[float]] | None = None
    counterfactual: dict[str, list[Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON data."""
        return asdict(self)


def benchmark_chunk(model: nn.Module, x: torch.Tensor, method: str, start: int,
                    settings: QualitySettings = QualitySettings(), sanity: bool = False
                    ) -> MethodRecord:
    """Every measure of ``method`` on the images ``x`` (the run's images ``start`` on).

    The maps explain each image's predicted class. Max-sensitivity runs when ``start`` is
    under ``settings.sensitivity_images``. ``sanity``: also run the randomisation check on
    this chunk's first ``settings.sanity_images`` images. The adversarial method
    also gets its counterfactual validity toward the second most likely class; the
    ``"random"`` baseline gets only the curves.
    """
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + start)
    predicted, second = targets_for(model, x)

    def map_fn(net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return attribution_maps(net, images, target, method, settings, generator)

    maps = map_fn(model, x, predicted)
    seconds_maps = time.perf_counter() - began
    curves = deletion_insertion(model, x, predicted, maps, settings, generator)
    record = MethodRecord(
        method=method, start=start, n_images=int(x.shape[0]), seconds_maps=seconds_maps,
        seconds_total=0.0, deletion=curves.deletion.tolist(),
        insertion=curves.insertion.tolist(), fractions=curves.fractions.tolist(),
    )
    if method != BASELINE:
        record.infidelity = infidelity(model, x, predicted, maps, settings, generator).tolist()
        if start < settings.sensitivity_images:
            record.sensitivity = max_sensitivity(
                lambda images, target: map_fn(model, images, target), x, predicted, settings
            ).tolist()
        if sanity and settings.sanity_images > 0:
            n = min(settings.sanity_images, x.shape[0])
            check = cascading_randomisation(model, x[:n], predicted[:n], map_fn,
                                            seed=settings.seed, trained_maps=maps[:n])
            record.sanity_stages = check.stages
            record.sanity_layers = check.top_layers
            record.sanity_correlation = check.correlation.tolist()
    if method == "adversarial":
        cf = counterfactual_validity(model, x, second, settings)
        record.counterfactual = {
            "rises": cf.rises.tolist(), "became_target": cf.became_target.tolist(),
            "perturbation_rms": cf.perturbation_rms.tolist(),
            "prob_before": cf.prob_before.tolist(), "prob_after": cf.prob_after.tolist(),
            "sane": cf.sane.tolist(),
        }
    record.seconds_total = time.perf_counter() - began
    return record


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def summarise(records: Sequence[MethodRecord]) -> dict[str, Any]:
    """The table: one row per method, from its records (chunks in any order).

    Each row has the mean deletion and insertion areas, the mean curves, infidelity and
    max-sensitivity (means), the randomisation check (mean correlation per stage and the
    flag), counterfactual validity (adversarial only) and timings.
    """
    by_method: dict[str, list[MethodRecord]] = {}
    for rec in records:
        by_method.setdefault(rec.method, []).append(rec)
    rows: dict[str, Any] = {}
    for method, recs in by_method.items():
        recs = sorted(recs, key=lambda r: r.start)
        deletion = [c for r in recs for c in r.deletion]
        insertion = [c for r in recs for c in r.insertion]
        fractions = recs[0].fractions
        n = len(deletion)
        row: dict[str, Any] = {
            "n_images": n,
            "deletion_area": _mean([float(torch.trapezoid(torch.tensor(c),
                                                          torch.tensor(fractions)))
                                    for c in deletion]),
            "insertion_area": _mean([float(torch.trapezoid(torch.tensor(c),
                                                           torch.tensor(fractions)))
                                     for c in insertion]),
            "fractions": fractions,
            "deletion_curve": torch.tensor(deletion).mean(0).tolist(),
            "insertion_curve": torch.tensor(insertion).mean(0).tolist(),
            "seconds_per_image_maps": sum(r.seconds_maps for r in recs) / n,
            "seconds_per_image": sum(r.seconds_total for r in recs) / n,
            "seconds_total": sum(r.seconds_total for r in recs),
        }
        infid = [v for r in recs for v in (r.infidelity or [])]
        sens = [v for r in recs for v in (r.sensitivity or [])]
        row["infidelity"] = _mean(infid) if infid else None
        row["max_sensitivity"] = _mean(sens) if sens else None
        row["max_sensitivity_images"] = len(sens)
        sanity = next((r for r in recs if r.sanity_correlation is not None), None)
        if sanity is not None and sanity.sanity_correlation is not None:
            per_stage = [_mean(c) for c in sanity.sanity_correlation]
            row["randomisation"] = {
                "n_images": len(sanity.sanity_correlation[0]),
                "stages": sanity.sanity_stages, "top_layers": sanity.sanity_layers,
                "correlation": per_stage,
                "flagged": per_stage[-1] >= SANITY_THRESHOLD,
            }
        cfs = [r.counterfactual for r in recs if r.counterfactual is not None]
        if cfs:
            rises = [v for cf in cfs for v in cf["rises"]]
            became = [v for cf in cfs for v in cf["became_target"]]
            sizes = [v for cf in cfs for v in cf["perturbation_rms"]]
            row["counterfactual"] = {
                "target": "second most likely class",
                "n_pairs": len(rises),
                "rises": _mean([float(v) for v in rises]),
                "became_target": _mean([float(v) for v in became]),
                "valid": _mean([float(a and b) for a, b in zip(rises, became, strict=True)]),
                "median_rms": statistics.median(sizes),
                "median_rms_levels": 255 * statistics.median(sizes),
            }
        rows[method] = row
    return rows


def markdown_table(rows: dict[str, Any]) -> str:
    """The summary as a Markdown table (one row per method, the baseline last)."""
    def fmt(value: Any, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| method | deletion area ↓ | insertion area ↑ | infidelity ↓ | max-sensitivity ↓ "
        "| randomisation: rank corr. (top layer → all) | counterfactual valid "
        "| s / image: map (all measures) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = [m for m in (*METHODS, BASELINE) if m in rows] + sorted(
        m for m in rows if m not in (*METHODS, BASELINE))
    for method in order:
        row = rows[method]
        rand = row.get("randomisation")
        sanity = "–" if rand is None else (
            " → ".join(f"{c:.2f}" for c in rand["correlation"])
            + (" **flagged**" if rand["flagged"] else ""))
        cf = row.get("counterfactual")
        valid = "–" if cf is None else (
            f"{cf['valid']:.0%} (rises {cf['rises']:.0%}; median RMS "
            f"{cf['median_rms_levels']:.1f}/255)")
        lines.append(
            f"| {method} | {fmt(row['deletion_area'])} | {fmt(row['insertion_area'])} "
            f"| {fmt(row['infidelity'], 4)} | {fmt(row['max_sensitivity'])} | {sanity} "
            f"| {valid} | {row['seconds_per_image_maps']:.3f} ({row['seconds_per_image']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def plot_quality_curves(rows: dict[str, Any], path: str, title: str = "") -> None:
    """Draw every method's mean deletion and insertion curves into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120, sharey=True)
    for method, row in rows.items():
        style = {"color": "grey", "ls": "--"} if method == BASELINE else {}
        axes[0].plot(row["fractions"], row["deletion_curve"],
                     label=f"{method} ({row['deletion_area']:.3f})", **style)
        axes[1].plot(row["fractions"], row["insertion_curve"],
                     label=f"{method} ({row['insertion_area']:.3f})", **style)
    for ax, name in zip(axes, ("deletion (lower is better)", "insertion (higher is better)"),
                        strict=True):
        ax.set_xlabel("share of pixels replaced" if name.startswith("del")
                      else "share of pixels restored")
        ax.set_title(name)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("probability of the predicted class")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_benchmark(model: nn.Module, images: torch.Tensor, methods: Sequence[str],
                  settings: QualitySettings = QualitySettings(), chunk_size: int = 10,
                  done: Sequence[MethodRecord] = (),
                  on_record: Callable[[MethodRecord], None] | None = None,
                  progress: Callable[[float], None] | None = None) -> list[MethodRecord]:
    """Run :func:`benchmark_chunk` for each method over ``images`` ``(N, C, H, W)`` in
    chunks of ``chunk_size``, the first chunk with the randomisation check.

    Records in ``done`` (same settings, from an interrupted run) are kept and not run
    again; ``on_record`` sees each new record as it is made (to save it).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    unknown = [m for m in methods if m not in (*METHODS, BASELINE)]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; use one of "
                         f"{', '.join((*METHODS, BASELINE))}")
    starts = range(0, images.shape[0], chunk_size)
    have = {(r.method, r.start): r for r in done
            if r.start in starts and r.n_images == min(chunk_size, images.shape[0] - r.start)}
    todo = [(m, s) for m in methods for s in starts]
    records = []
    for n, (method, start) in enumerate(todo):
        record = have.get((method, start))
        if record is None:
            record = benchmark_chunk(model, images[start:start + chunk_size], method, start,
                                     settings, sanity=start == 0)
            if on_record is not None:
                on_record(record)
        records.append(record)
        if progress is not None:
            progress((n + 1) / len(todo))
    return records


def metrics_summary(rows: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The figures a model's metadata keeps (``metrics["explainers"]``): each method's
    areas, infidelity, max-sensitivity, randomisation flag and counterfactual validity,
    with the image counts and settings they were measured with."""
    methods: dict[str, Any] = {}
    for method, row in rows.items():
        rand, cf = row.get("randomisation"), row.get("counterfactual")
        methods[method] = {
            "deletion_area": row["deletion_area"], "insertion_area": row["insertion_area"],
            "infidelity": row["infidelity"], "max_sensitivity": row["max_sensitivity"],
            "max_sensitivity_images": row["max_sensitivity_images"],
            "randomisation_correlation": None if rand is None else rand["correlation"][-1],
            "randomisation_flagged": None if rand is None else rand["flagged"],
            "randomisation_images": None if rand is None else rand["n_images"],
            "counterfactual_valid": None if cf is None else cf["valid"],
            "counterfactual_median_rms": None if cf is None else cf["median_rms"],
            "seconds_per_image_maps": row["seconds_per_image_maps"],
        }
    n_images = max((row["n_images"] for row in rows.values()), default=0)
    return {"n_images": n_images, "settings": settings, "methods": methods}
