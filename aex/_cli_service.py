"""``aex serve``, ``aex worker`` and ``aex remote ...``: the service from the command line.

``aex serve`` runs the API, worker processes and, when no Redis is configured or
running, a Redis server of its own that keeps its data in ``AEX_DATA_DIR`` (so a restart
loses no job); it restarts a worker or that Redis when one dies, and Ctrl-C or SIGTERM
stops everything it started.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
WORKER_STOP_S = 10.0  # default of --stop-grace
UNIX_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
BATCH_SIZE = 16  # images per job of `aex remote explain DIR`
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def say(text: str = "") -> None:
    """Command-line output (stdout)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def register(sub: Any) -> None:
    """Add the service subcommands to ``sub`` (an argparse subparsers object)."""
    serve = sub.add_parser("serve", help="run the API, a worker and (if needed) Redis")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes to start (0: rely on workers elsewhere)")
    serve.add_argument("--evaluation-workers", type=int,
                       help="evaluation worker processes (POST /v1/evaluations; default 1 "
                            "when AEX_EVAL_DATA is set, else 0)")
    serve.add_argument("--stop-grace", type=float, default=WORKER_STOP_S, metavar="SECONDS",
                       help="how long a stopping worker may finish its job before it is "
                            "killed (the job then runs again at the next start; default "
                            "%(default)s)")
    serve.add_argument("--embedded-redis", action="store_true",
                       help="always start a private Redis (default: only when AEX_REDIS_URL "
                            "is unset and nothing answers on 127.0.0.1:6379)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run a worker that takes jobs from Redis")
    worker.add_argument("--burst", action="store_true",
                        help="exit when the queue is empty instead of waiting for jobs")
    worker.add_argument("--name", help="worker name (default: RQ's host.pid)")
    worker.add_argument("--preload", action="append", default=[], metavar="MODEL",
                        help="load this model (name or alias) before taking jobs; repeatable")
    worker.add_argument("--evaluations", action="store_true",
                        help="take evaluation jobs (POST /v1/evaluations, on their own queue) "
                             "instead of the others; needs AEX_EVAL_DATA")
    worker.set_defaults(func=_worker)

    remote = sub.add_parser("remote", help="use a running service over HTTP")
    remote.add_argument("--url", default=os.environ.get("AEX_URL", DEFAULT_URL),
                        help="service URL (default $AEX_URL or %(default)s)")
    remote.add_argument("--api-key", default=os.environ.get("AEX_API_KEY"),
                        help="X-API-Key to send (default $AEX_API_KEY)")
    rsub = remote.add_subparsers(dest="remote_command", required=True)
    explain = rsub.add_parser(
        "explain", help="explain an image's classification, or a folder's or several files' "
                        "in batches (with --out: one JSON file per image; a run resumes)")
    explain.add_argument("image", type=Path, nargs="+", metavar="DIR|FILE",
                         help="an image; several, or a folder (searched recursively), "
                              "make batches")
    explain.add_argument("--model", help="model name or alias (default: the default model)")
    explain.add_argument("--method", default="adversarial",
                         help="adversarial, saliency, integrated_gradients, smoothgrad, "
                              "gradcam; several comma-separated")
    explain.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                         help="images per job when explaining several (default %(default)s)")
    explain.add_argument("--seed", type=int, help="seed for methods that draw noise")
    explain.add_argument("--no-progress", action="store_true",
                         help="no progress bar for batches")
    explain.add_argument("--targets", default="all",
                         help="all, true, predicted, second, or classes: cat,dog,3")
    explain.add_argument("--rho", type=float, help="perturbation budget (adversarial)")
    explain.add_argument("--steps", type=int, help="routine steps (adversarial)")
    _output_arguments(explain)
    explain.set_defaults(func=_remote_explain)
    attack = rsub.add_parser("attack", help="attack the model on an image, compare Grad-CAM")
    attack.add_argument("image", type=Path)
    attack.add_argument("--model")
    attack.add_argument("--mode", default="l2min", choices=["l2", "l2min", "btr"])
    attack.add_argument("--eps", type=float)
    attack.add_argument("--steps", type=int)
    attack.add_argument("--target", help="l2 mode: class to push toward")
    _output_arguments(attack)
    attack.set_defaults(func=_remote_attack)
    models = rsub.add_parser("models", help="list the service's models")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_remote_models)


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="save the job's pictures into this folder")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")


# aex serve -----------------------------------------------------------------------------

class _Stopped(Exception):
    """Ctrl-C or SIGTERM: stop everything ``aex serve`` started, then exit normally."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _die_with_parent() -> None:
    """In a child: receive SIGTERM if ``aex serve`` dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _example_image(folder: Path) -> Path:
    """A small picture to try the service with."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (110, 160, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 44, 63, 63), fill=(70, 130, 60))
    draw.rectangle((14, 30, 50, 46), fill=(200, 30, 30))
    draw.ellipse((16, 40, 26, 50), fill=(20, 20, 20))
    draw.ellipse((38, 40, 48, 50), fill=(20, 20, 20))
    path = folder / "example.png"
    image.save(path)
    return path


def _stop(process: subprocess.Popen[bytes], name: str, grace: float) -> None:
    """SIGTERM (a worker finishes its job), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        logger.warning("%s (pid %d) did not stop in %g s; killing it (its job runs again "
                       "at the next start)", name, process.pid, grace)
        process.kill()
        process.wait()


def _announce(server: Any, url: str, example: Path) -> None:
    """Once the server listens: where to go and a ``curl`` example that works as printed."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    say(f"aex service on {url}  (API docs: {url}/docs; Ctrl-C stops everything)")
    say("try it:")
    say(f"  curl -s \"{url}$(curl -s -o /dev/null -w '%header{{location}}' "
        f"-F image=@{example} {url}/v1/explanations)?wait=120\"")


def _lock_data_dir(folder: Path) -> Any:
    """Hold a lock on ``folder`` for this process's lifetime (one ``aex serve`` per data
    directory); the open lock file, to keep."""
    from aex.cli import CommandError

    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "aex-serve.lock", "w")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise CommandError(f"another `aex serve` keeps its Redis data in {folder}; stop it, "
                           "or set AEX_DATA_DIR to another folder") from exc
    return handle


def _embedded_redis(data_dir: Path) -> Any:
    """The persistent Redis of ``aex serve``: an append-only file in ``data_dir/redis``,
    on a Unix socket there (a free local port when the path is too long for a socket)."""
    from aex.service.redis_server import RedisServer, free_port

    folder = data_dir / "redis"
    port = free_port() if len(str(folder / "redis.sock")) > UNIX_SOCKET_PATH_MAX else None
    return RedisServer(folder, port=port, persistent=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from aex.cli import CommandError
    from aex.contract.connection import mask_url
    from aex.contract.settings import Settings
    from aex.service.app import create_app
    from aex.service.redis_server import RedisServer, redis_answers

    from ._supervisor import Supervised, Supervisor

    if not 0 <= args.workers <= 64:
        raise CommandError("--workers must be between 0 and 64")
    evaluation_workers = args.evaluation_workers
    if evaluation_workers is None:
        evaluation_workers = 1 if os.environ.get("AEX_EVAL_DATA") else 0
    if not 0 <= evaluation_workers <= 64:
        raise CommandError("--evaluation-workers must be between 0 and 64")
    if not 0 <= args.stop_grace <= 86_400:
        raise CommandError("--stop-grace must be between 0 and 86400 seconds")
    if not _port_free(args.host, args.port):
        raise CommandError(f"{args.host}:{args.port} is in use; choose another --port")
    state = Path(tempfile.mkdtemp(prefix="aex-serve-"))
    redis_server: RedisServer | None = None
    lock = None
    workers: list[Supervised] = []
    children: list[Supervised] = []
    supervisor = Supervisor(children)
    env = dict(os.environ)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stopped)
    try:
        if args.embedded_redis or (
            "AEX_REDIS_URL" not in os.environ and not redis_answers("127.0.0.1", 6379)
        ):
            data_dir = Settings().data_dir
            lock = _lock_data_dir(data_dir)
            redis_server = _embedded_redis(data_dir)

            def start_redis(server: RedisServer = redis_server) -> subprocess.Popen[bytes]:
                server.start(preexec_fn=_die_with_parent, start_new_session=True)
                return cast("subprocess.Popen[bytes]", server.process)

            children.append(Supervised("the Redis server", start_redis))
            env["AEX_REDIS_URL"] = redis_server.url
            say(f"Redis: {redis_server.url} (started by aex serve; its data stays in "
                f"{redis_server.directory}, AEX_DATA_DIR)")
        elif "AEX_REDIS_URL" in os.environ:
            say(f"Redis: {mask_url(env['AEX_REDIS_URL'])} (AEX_REDIS_URL)")
        else:
            env["AEX_REDIS_URL"] = "redis://127.0.0.1:6379/0"
            say("Redis: redis://127.0.0.1:6379/0 (the one running there; set AEX_REDIS_URL "
                "or pass --embedded-redis to use another)")
        settings = Settings(redis_url=env["AEX_REDIS_URL"])
        url = f"http://{args.host}:{args.port}"
        env.setdefault("AEX_API_URL", url)
        _warn_without_default_model(settings)
        roles: list[tuple[str, list[str]]] = [
            (f"worker {n}", []) for n in range(1, args.workers + 1)] + [
            (f"evaluation worker {n}", ["--evaluations"])
            for n in range(1, evaluation_workers + 1)]
        for name, extra in roles:
            def start(extra: list[str] = extra) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-m", "aex.worker", *extra], env=env,
                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                    start_new_session=True)

            workers.append(Supervised(name, start))
        children.extend(workers)
        supervisor.start()
        config = uvicorn.Config(create_app(settings), host=args.host, port=args.port,
                                log_level="info")
        server = uvicorn.Server(config)
        threading.Thread(target=_announce, args=(server, url, _example_image(state)),
                         daemon=True).start()
        server.run()
    except _Stopped:
        logger.info("stopping")
    finally:
        supervisor.stop()
        for worker in workers:
            if worker.process is not None:
                _stop(worker.process, worker.name, args.stop_grace)
        if redis_server is not None:
            redis_server.stop()
        supervisor.close()
        if lock is not None:
            lock.close()
        shutil.rmtree(state, ignore_errors=True)
    return 0


def _warn_without_default_model(settings: Any) -> None:
    """Say how to get a model when the registry has no ``default`` one."""
    from aex.models.store import DEFAULT_ALIAS, ModelNotFoundError, ModelStore

    try:
        ModelStore(settings.model_dir).get(DEFAULT_ALIAS)
    except ModelNotFoundError as exc:
        say(f"warning: {exc}. Register one, for example: aex models import-reference "
            f"../shared/checkpoints/reference/resnet44-robust.pt --name paper-robust "
            f"--alias {DEFAULT_ALIAS}")


# aex worker ----------------------------------------------------------------------------

def _worker(args: argparse.Namespace) -> int:
    from aex.contract.settings import get_settings
    from aex.worker.main import run_worker

    run_worker(get_settings(), burst=args.burst, name=args.name, preload=args.preload,
               evaluations=args.evaluations)
    return 0


# aex remote ----------------------------------------------------------------------------

def _client(args: argparse.Namespace) -> Any:
    from aex.client import Client

    return Client(args.url, api_key=args.api_key)


def _report(done: Any, args: argparse.Namespace) -> None:
    result = done.result
    if args.json:
        say(json.dumps(result, indent=2))
    if args.out:
        paths = done.save(args.out)
        say(f"saved {len(paths)} files (pictures and arrays) in {args.out}")


def _remote_call(args: argparse.Namespace, call: str, **options: Any) -> Any:
    from aex.cli import CommandError
    from aex.client import JobFailedError, ServiceError

    if not args.image.is_file():
        raise CommandError(f"no such image file: {args.image}")
    with _client(args) as client:
        try:
            done = getattr(client, call)(args.image, timeout=args.timeout, **options)
            _report(done, args)
        except (ServiceError, JobFailedError) as exc:
            raise CommandError(str(exc)) from exc
    return done.result


def _images_under(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(output name, file) of each image to explain: a folder's images (recursively, by
    their path inside it) or the files given (by name)."""
    from aex.cli import CommandError

    found: list[tuple[str, Path]] = []
    for given in inputs:
        if given.is_dir():
            found += [(path.relative_to(given).as_posix(), path)
                      for path in sorted(given.rglob("*"))
                      if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
        elif given.is_file():
            found.append((given.name, given))
        else:
            raise CommandError(f"no such image file or folder: {given}")
    names = [name for name, _ in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise CommandError(f"two inputs would write the same output: {', '.join(twice[:5])}")
    if not found:
        raise CommandError("no PNG, JPEG or WebP image found in "
                           f"{', '.join(str(i) for i in inputs)}")
    return found


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, shown: bool) -> None:
        self.total, self.shown, self.done = total, shown, 0

    def show(self, done: int, note: str = "") -> None:
        self.done = done
        if self.shown:
            filled = int(30 * done / max(1, self.total))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
                             f"images {note}".ljust(79))
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a run stopped half way leaves no partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def _remote_explain_batches(args: argparse.Namespace) -> int:
    from aex.cli import CommandError
    from aex.client import JobFailedError, ServiceError

    if args.out is None:
        raise CommandError("explaining several images needs --out DIR (one JSON file per image)")
    if not 1 <= args.batch_size <= 1000:
        raise CommandError("--batch-size must be 1-1000")
    images = _images_under(args.image)
    todo = [(name, path) for name, path in images
            if not (args.out / f"{name}.json").is_file()]
    bar = _Bar(len(images), not args.no_progress)
    done = len(images) - len(todo)
    failed: list[str] = []
    bar.show(done, "(resumed)" if done else "")
    with _client(args) as client:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            base = done

            def seen(name: str, data: dict[str, Any], _base: int = base) -> None:
                if name == "partial":
                    bar.show(_base + int(data["index"]) + 1)

            try:
                job = client.explain_batch(
                    [path for _, path in chunk], methods=args.method, targets=args.targets,
                    model=args.model, rho=args.rho, steps=args.steps, seed=args.seed,
                    on_event=seen, timeout=args.timeout)
            except (ServiceError, JobFailedError) as exc:
                bar.close()
                raise CommandError(f"{exc} (the images done so far are saved; run again "
                                   "to resume)") from exc
            result = job.result
            for (name, _), entry in zip(chunk, result["images"], strict=True):
                if entry["status"] == "failed":
                    failed.append(f"{name}: {entry['error']}")
                    continue
                _write_json(args.out / f"{name}.json", {
                    "job": job.id, "model": result["model"], "file": name, **entry,
                    "artifact_urls": {n: result["artifacts"][n] for n in entry["artifacts"]},
                    "record": result["record"]})
            done += len(chunk)
            bar.show(done)
    bar.close()
    say(f"{len(images) - len(failed)} of {len(images)} images explained into {args.out}")
    for line in failed:
        say(f"  failed: {line}")
    return 1 if failed else 0


def _remote_explain(args: argparse.Namespace) -> int:
    if len(args.image) > 1 or args.image[0].is_dir() or "," in args.method:
        return _remote_explain_batches(args)
    args.image = args.image[0]
    result = _remote_call(args, "explain", targets=args.targets, method=args.method,
                          model=args.model, rho=args.rho, steps=args.steps, seed=args.seed)
    if not args.json:
        top = result["predictions"][0]
        say(f"{result['model']}: predicted {top['class']} ({top['probability']:.3f})")
        for t in result["targets"]:
            after = t["probability_after"]
            change = f" -> {after:.3f}" if after is not None else ""
            say(f"  {t['class']:>12}: {t['probability_before']:.3f}{change}  {t['artifact']}")
    return 0


def _remote_attack(args: argparse.Namespace) -> int:
    result = _remote_call(args, "attack", mode=args.mode, model=args.model, eps=args.eps,
                          steps=args.steps, target=args.target)
    if not args.json:
        b, a = result["before"], result["after"]
        say(f"{result['model']} ({result['mode']}): {b['class']} ({b['probability']:.3f}) -> "
            f"{a['class']} ({a['probability']:.3f}), perturbation rms "
            f"{result['perturbation_rms']:.4f}, success {result['success']}, "
            f"Grad-CAM similarity {result['gradcam_similarity']:.3f}")
    return 0


def _remote_models(args: argparse.Namespace) -> int:
    from aex.cli import CommandError
    from aex.client import ServiceError

    with _client(args) as client:
        try:
            models = client.models()
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
    if args.json:
        say(json.dumps(models, indent=2))
        return 0
    for m in models:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in m["metrics"].items()
                            if isinstance(v, int | float))
        aliases = f" (aliases: {', '.join(m['aliases'])})" if m["aliases"] else ""
        say(f"{m['name']}{aliases}: {m['arch']}, {len(m['classes'])} classes"
            f"{', ' + metrics if metrics else ''}")
    return 0
