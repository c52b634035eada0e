"""The README's curl examples, timed on this machine: do they end within their `wait`?

    python bench/bench_readme_examples.py [--model paper-robust] [--image cat.jpg]

Starts its own Redis, API and one worker (the model preloaded and warmed up, as a
running service has it), then times each README request from submission to the
finished result, with the `wait` the README's example uses beside it: the explanation
(all targets, `?wait=60`) and the attack (`mode=l2min`, `?wait=120`). The figures go
into the README's API section.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_service import Service, model_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    ("explanation, targets=all", "/v1/explanations", {"targets": "all"}, 60.0),
    ("attack, mode=l2min", "/v1/attacks", {"mode": "l2min"}, 120.0),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper-robust")
    parser.add_argument("--image", type=Path,
                        default=ROOT / ".cache" / "data" / "test" / "cat" / "0055.jpg")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = args.image.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, model = model_registry(args.model, Path(tmp))
        service = Service(Path(tmp), model_dir, args.threads)
        try:
            service.set_workers(1, model)
            for label, path, fields, wait in EXAMPLES:
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    accepted = service.http.post(path, files={"image": (args.image.name, data)},
                                                 data={"model": model, **fields})
                    accepted.raise_for_status()
                    while True:
                        view = service.http.get(accepted.json()["status_url"],
                                                params={"wait": 60}).json()
                        if view["status"] in ("finished", "failed", "canceled"):
                            break
                    if view["status"] != "finished":
                        raise RuntimeError(f"{label}: {view['status']}: {view['error']}")
                    times.append(time.perf_counter() - start)
                worst = max(times)
                verdict = "within" if worst <= wait else "OVER"
                print(f"{label}: {', '.join(f'{t:.2f}' for t in times)} s "
                      f"(worst {worst:.2f} s, {verdict} the example's wait={wait:g} s; "
                      f"{worst / wait:.2f}x of it)")
        finally:
            service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
