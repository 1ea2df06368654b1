"""A quiet console for long Ray jobs: Ray's own output (worker tracebacks, C++ log lines, Ray Data progress
logs) goes to a log file; the job prints its own short lines (progress, report, one-line errors) on the
terminal and names the log file.

    with RayLog("out/x_layout.lmdb.log") as log:
        log.say("layout: 10/100 pages")      # to the real terminal
        ...                                  # anything Ray prints lands in the log file
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable


class RayLog:
    """Redirects this process's stdout/stderr file descriptors to ``path`` (appending) while active."""

    def __init__(self, path: str, enabled: bool = True):
        self.path, self.enabled = path, enabled
        self._saved: list[int] = []
        self._out = None

    def __enter__(self) -> "RayLog":
        if not self.enabled:
            return self
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._saved = [os.dup(1), os.dup(2)]
        self._out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def say(self, line: str) -> None:
        """One line on the real terminal (stdout), whatever the redirection."""
        if self._out is not None:
            self._out.write(line + "\n")
            self._out.flush()
        else:
            print(line, flush=True)

    def __exit__(self, *exc) -> None:
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = []
        self._out.close()
        self._out = None


class Ticker:
    """Calls ``fn()`` every ``every`` seconds on a daemon thread until stopped (progress lines)."""

    def __init__(self, fn: Callable[[], None], every: float):
        self.fn, self.every = fn, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.fn()
            except Exception:  # noqa: BLE001 - progress must never break the job
                pass

    def __enter__(self) -> "Ticker":
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def page_counter():
    """A Ray actor (no CPU) that counts pages by what happened to them: the compose tasks tell it
    ``counter.add.remote("composed", n)``, the sink ``counter.add.remote("written", n)`` (fire and forget); the
    driver reads ``ray.get(counter.totals.remote())``. Retried tasks count again (progress only).

    It lives on the driver's node (hard node affinity), whose loss ends the job anyway: a counter on a node
    that died silenced the progress lines for the rest of a run (issue 27). Restartable, from zero."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class PageCounter:
        def __init__(self):
            self.counts = {"composed": 0, "written": 0}

        def add(self, what: str, n: int) -> None:
            self.counts[what] += n

        def totals(self) -> dict[str, int]:
            return dict(self.counts)

    here = ray.get_runtime_context().get_node_id()
    return PageCounter.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
                               max_restarts=-1).remote()
