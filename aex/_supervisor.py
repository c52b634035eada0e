"""Keep the child processes of ``aex serve`` running: one that dies is started again.

A child that exits while ``aex serve`` runs is restarted after a back-off that doubles
with each quick failure (from :data:`BACKOFF_FIRST_S` to :data:`BACKOFF_MAX_S`) and is
forgiven once the child has run :data:`STABLE_S` seconds; each death and restart is a
log line.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
POLL_S = 0.25


class Supervised:
    """One child: ``start()`` runs it (and returns its process) now and after each death."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self.name = name
        self._start = start
        self.process: subprocess.Popen[bytes] | None = start()
        self._started = time.monotonic()
        self._failures = 0
        self._restart_at = 0.0

    def check(self) -> None:
        """Note a death (and when to restart), or restart the child when it is time."""
        now = time.monotonic()
        if self.process is not None:
            if self.process.poll() is None:
                if now - self._started >= STABLE_S:
                    self._failures = 0
                return
            delay = min(BACKOFF_FIRST_S * 2 ** self._failures, BACKOFF_MAX_S)
            logger.warning("%s (pid %d) exited with status %s; restarting it in %.1f s",
                           self.name, self.process.pid, self.process.returncode, delay)
            self._failures += 1
            self._restart_at = now + delay
            self.process = None
        if now >= self._restart_at:
            try:
                self.process = self._start()
            except (OSError, RuntimeError, TimeoutError) as exc:
                delay = min(BACKOFF_FIRST_S * 2 ** self._failures, BACKOFF_MAX_S)
                logger.warning("%s could not be restarted (%s); trying again in %.1f s",
                               self.name, exc, delay)
                self._failures += 1
                self._restart_at = now + delay
                return
            self._started = time.monotonic()
            logger.warning("restarted %s (pid %d)", self.name, self.process.pid)


class Supervisor:
    """A thread that checks ``children`` every :data:`POLL_S` seconds until :meth:`stop`.

    The children it restarts are its own (a child started with ``PR_SET_PDEATHSIG`` gets
    its signal when the *thread* that started it ends), so the thread lives on after
    :meth:`stop` until :meth:`close`, which is called once the children are stopped.
    """

    def __init__(self, children: list[Supervised]) -> None:
        self.children = children
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aex-supervisor", daemon=True)

    def start(self) -> Supervisor:
        """Start watching."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(POLL_S):
            for child in self.children:
                if self._stopping.is_set():
                    break
                child.check()
        self._stopped.set()
        self._closing.wait()

    def stop(self) -> None:
        """Restart nothing more (the children keep running); returns once no restart is
        under way."""
        self._stopping.set()
        if self._thread.is_alive():
            self._stopped.wait()

    def close(self) -> None:
        """End the thread (after the children are stopped)."""
        self._stopping.set()
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()
