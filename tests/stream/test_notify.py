"""Waking subscribers (`udr.stream.notify`): inotify on the watched file, in-process wake-ups, polling."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from udr.log.store import LogStore
from udr.stream.notify import InotifyWaiter, PollWaiter, Waiter, open_waiter

pytestmark = pytest.mark.anyio

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    path = tmp_path / "data.mdb"
    path.write_bytes(b"\0" * 16)
    return path


def _touch(path: Path, data: bytes = b"x") -> None:
    with open(path, "r+b") as fh:
        fh.write(data)


def _writer_process(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"open({str(path)!r}, 'r+b').write(b'x')"])


async def _returns_within(waiter: Waiter, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await waiter.wait()
        return True
    return False


@linux_only
async def test_a_write_by_another_process_ends_the_wait(watched: Path) -> None:
    waiter = InotifyWaiter(watched)
    try:
        writer = _writer_process(watched)
        try:
            assert await _returns_within(waiter, 10)
        finally:
            writer.wait()
    finally:
        await waiter.aclose()


@linux_only
async def test_a_write_before_wait_is_not_lost_and_is_drained_once(watched: Path) -> None:
    waiter = InotifyWaiter(watched)
    try:
        _touch(watched, b"x")
        _touch(watched, b"y")
        assert await _returns_within(waiter, 1)
        # Both writes were drained by that one wait: nothing is pending now.
        assert not await _returns_within(waiter, 0.1)
    finally:
        await waiter.aclose()


@pytest.mark.parametrize("kind", ["inotify", "poll"])
async def test_wake_from_another_thread_ends_the_wait_at_once(watched: Path, kind: str) -> None:
    if kind == "inotify" and not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux-only")
    waiter: Waiter = InotifyWaiter(watched) if kind == "inotify" else PollWaiter(interval=30)
    try:
        threading.Timer(0.05, waiter.wake).start()
        started = time.monotonic()
        assert await _returns_within(waiter, 5)
        assert time.monotonic() - started < 2
    finally:
        await waiter.aclose()


async def test_the_poll_waiter_returns_after_its_interval() -> None:
    waiter = PollWaiter(interval=0.05)
    try:
        started = time.monotonic()
        await waiter.wait()
        assert 0.04 <= time.monotonic() - started < 2
    finally:
        await waiter.aclose()


async def test_a_closed_poll_waiter_ends_every_wait_as_closed() -> None:
    waiter = PollWaiter(interval=0.05)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async def close_soon() -> None:
                await anyio.sleep(0.01)
                await waiter.aclose()

            tg.start_soon(close_soon)
            with pytest.raises(anyio.ClosedResourceError):  # closed during the wait
                await waiter.wait()
    with pytest.raises(anyio.ClosedResourceError):  # and after
        await waiter.wait()


@linux_only
async def test_an_idle_waiter_uses_no_cpu(watched: Path) -> None:
    waiter = InotifyWaiter(watched)
    try:
        cpu = time.process_time()
        assert not await _returns_within(waiter, 0.5)
        assert time.process_time() - cpu < 0.1
    finally:
        await waiter.aclose()


async def test_a_file_that_cannot_be_watched_falls_back_to_polling(tmp_path: Path) -> None:
    waiter = open_waiter(tmp_path / "missing")
    try:
        assert isinstance(waiter, PollWaiter)
    finally:
        await waiter.aclose()


@linux_only
async def test_aclose_is_idempotent(watched: Path) -> None:
    waiter = open_waiter(watched)
    assert isinstance(waiter, InotifyWaiter)
    await waiter.aclose()
    await waiter.aclose()
    waiter.wake()  # after close: ignored, never raises


def test_wait_published_returns_at_once_when_every_write_is_visible(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    try:
        started = time.monotonic()
        log.env.wait_published()
        assert time.monotonic() - started < 0.5
    finally:
        log.close()
