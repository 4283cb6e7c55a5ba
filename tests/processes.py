"""Worker processes of the multi-process tests: a fixture body that starts a worker script's commands and
kills whatever is still running when the test ends, and the wait for one to finish cleanly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Start = Callable[..., subprocess.Popen[str]]


@contextmanager
def worker_processes(script: Path) -> Iterator[Start]:
    """Yield `start(command, *args)`, which runs `script` in a new process; any still running at exit is killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """Wait for a worker to exit cleanly; return its stdout lines."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out.splitlines()
