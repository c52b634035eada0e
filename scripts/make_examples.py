"""Make the web page's gallery images (service/static/examples/CLASS.jpg).

They are the bundled robust model's own pictures of its classes, not dataset images: a
mid-grey 32×32 image pushed toward each class by the adversarial routine (method.md §3,
``encourage``, ρ = 0.3, 200 steps), the features the network needs to see for it.

    python scripts/make_examples.py [--out service/static/examples]
"""

from __future__ import annotations

import argparse
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image

from aex.models import load_checkpoint, perturb
from aex.models.render import image_png


def main() -> None:
    """Write one JPEG per class of the bundled default model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "service/static/examples")
    parser.add_argument("--rho", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    loaded = load_checkpoint("aex-cifar10-r20")
    size = loaded.input_size
    classes = loaded.classes
    grey = torch.full((len(classes), 3, *size), 0.5)
    targets = torch.arange(len(classes))
    result = perturb(loaded.model.eval(), grey, targets, mode="encourage", eps=args.rho,
                     steps=args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(classes):
        picture = Image.open(BytesIO(image_png(result.x_adv[index].clamp(0, 1))))
        picture.convert("RGB").save(args.out / f"{name}.jpg", quality=95)
        print(f"wrote {args.out / f'{name}.jpg'}")


if __name__ == "__main__":
    main()
