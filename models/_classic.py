"""Classic heat-map explainers through Captum: saliency, Integrated Gradients,
SmoothGrad and Grad-CAM (for comparison with adversarial explanations)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._perturb import check_images, frozen

CLASSIC_METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam")


def _feature_layer(model: nn.Module) -> nn.Module:
    layer = getattr(model, "feature_layer", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no 'feature_layer' for Grad-CAM; use a registry model"
        )
    return layer


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Scale each ``(H, W)`` map into ``[0, 1]`` by its own maximum."""
    top = maps.flatten(1).amax(1).clamp_min(1e-12)
    return maps / top.view(-1, 1, 1)


class ClassicExplainer:
    """One of Captum's attribution methods, returning a heat map per image.

    Args:
        model: maps ``[0, 1]`` images to logits (our registry models).
        method: ``"saliency"`` (|∂logit/∂x|, max over channels), ``"integrated_gradients"``
            (black baseline, ``ig_steps`` steps), ``"smoothgrad"`` (saliency averaged over
            ``smooth_samples`` noisy copies, σ = ``smooth_sigma``), ``"gradcam"`` (the
            model's last stage, upsampled to the input size).

    Example::

        heat = ClassicExplainer(model, "gradcam").attribute(x, target=torch.tensor([3]))
    """

    def __init__(self, model: nn.Module, method: str, *, ig_steps: int = 32,
                 smooth_samples: int = 16, smooth_sigma: float = 0.15) -> None:
        if method not in CLASSIC_METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(CLASSIC_METHODS)}")
        self.model, self.method = model, method
        self.ig_steps = ig_steps
        self.smooth_samples, self.smooth_sigma = smooth_samples, smooth_sigma

    @property
    def settings(self) -> dict[str, object]:
        """The settings this method runs with (for a record of how a result was made)."""
        if self.method == "integrated_gradients":
            return {"baseline": "black", "ig_steps": self.ig_steps}
        if self.method == "smoothgrad":
            return {"smooth_samples": self.smooth_samples, "smooth_sigma": self.smooth_sigma}
        if self.method == "gradcam":
            return {"layer": "feature_layer", "relu_attributions": True,
                    "upsample": "bilinear"}
        return {"abs": True}

    def attribute(self, x: torch.Tensor, target: torch.Tensor, *,
                  normalise: bool = True) -> torch.Tensor:
        """Heat maps ``(B, H, W)`` for ``x`` ``(B, C, H, W)`` and targets ``(B,)``: each
        scaled into ``[0, 1]`` by its own maximum, or, with ``normalise=False``, the
        attribution itself (absolute values, the largest over channels; Grad-CAM's
        positive part, upsampled), in the method's own units."""
        from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

        check_images(x)
        target = target.to(x.device).long()
        if target.shape != (x.shape[0],):
            raise ValueError(f"target must have shape ({x.shape[0]},), got {tuple(target.shape)}")
        with frozen(self.model):
            inputs = x.detach().clone().requires_grad_(True)
            if self.method == "saliency":
                attr = Saliency(self.model).attribute(inputs, target=target, abs=True)
            elif self.method == "integrated_gradients":
                attr = IntegratedGradients(self.model).attribute(
                    inputs, baselines=torch.zeros_like(inputs), target=target,
                    n_steps=self.ig_steps, internal_batch_size=max(1, 256 // len(inputs) or 1),
                ).abs()
            elif self.method == "smoothgrad":
                attr = NoiseTunnel(Saliency(self.model)).attribute(
                    inputs, nt_type="smoothgrad", nt_samples=self.smooth_samples,
                    stdevs=self.smooth_sigma, target=target, abs=True,
                    nt_samples_batch_size=self.smooth_samples,
                )
            else:
                cam = LayerGradCam(self.model, _feature_layer(self.model)).attribute(
                    inputs, target=target, relu_attributions=True)
                attr = F.interpolate(cam, size=x.shape[-2:], mode="bilinear",
                                     align_corners=False)
        maps = (attr.detach().amax(1) if attr.shape[1] > 1 else attr.detach()[:, 0]).clamp_min(0)
        return _normalise(maps) if normalise else maps
