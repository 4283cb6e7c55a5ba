"""Waking a subscriber when a commit may have landed, in this process or any other, without busy-waiting.

Every committed LMDB write transaction writes the log's data file, so watching that one file with Linux
inotify (`IN_MODIFY`) hears about commits by any process on the machine with no help from writers. A socket
pair adds in-process wake-ups: a commit listener calls `wake()` from whatever thread committed. Both sit in
one epoll set, so a single `anyio.wait_readable` covers them and an idle subscriber uses no CPU. Where
inotify is missing (not Linux) or fails, `PollWaiter` checks every 50 ms, still woken at once in-process.

A wake-up is a hint, never a promise: it may come with nothing new (a lease or ack write, a commit to
another branch, a write before the commit point), so callers re-read the log after every `wait()`. The rules
that lose no wake-up: `wait()` drains pending notifications *before* returning, and the caller reads the
log after that, so a commit landing after the drain leaves a notification that ends the next `wait()`; and
since LMDB writes a commit's last page a moment before readers can see it, the caller first lets what was
written become visible (`udr.log.activity.wait_published`).

`wake()` is safe from any thread; `wait()` and `aclose()` belong to the one task that owns the waiter.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import socket
import sys
from pathlib import Path
from typing import Protocol

import anyio

POLL_INTERVAL = 0.05

_IN_MODIFY = 0x00000002
_READ_SIZE = 4096


class Waiter(Protocol):
    """Something a subscriber awaits between reads of the log."""

    def wake(self) -> None:
        """End the current or next `wait()` early; safe from any thread, never blocks."""

    async def wait(self) -> None:
        """Return once a commit may have landed since the last `wait()` returned."""

    async def aclose(self) -> None:
        """Release the waiter's file descriptors (a task blocked in `wait()` gets `ClosedResourceError`)."""


class _LocalWake:
    """The in-process half: a socket pair whose reading end is readable after `wake()`."""

    def __init__(self) -> None:
        self.recv, self._send = socket.socketpair()
        self.recv.setblocking(False)
        self._send.setblocking(False)

    def wake(self) -> None:
        # A full buffer already holds a pending wake-up; a closed socket belongs to a closed waiter.
        with contextlib.suppress(OSError):
            self._send.send(b"\0")

    def drain(self) -> None:
        try:
            while self.recv.recv(_READ_SIZE):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.recv.close()
        self._send.close()


class InotifyWaiter:
    """Wakes on any write to the watched file (Linux inotify) and on `wake()`."""

    def __init__(self, watched: Path) -> None:
        """Watch `watched` for modification.

        Raises:
            OSError: inotify is unavailable or the file cannot be watched.
        """
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._inotify = fd
        self._local = _LocalWake()
        self._epoll = select.epoll()
        try:
            if libc.inotify_add_watch(fd, os.fsencode(watched), _IN_MODIFY) < 0:
                raise OSError(ctypes.get_errno(), f"cannot watch {watched}")
            self._epoll.register(fd, select.EPOLLIN)
            self._epoll.register(self._local.recv.fileno(), select.EPOLLIN)
        except OSError:
            self._close_fds()
            raise

    def wake(self) -> None:
        """End the current or next `wait()` early."""
        self._local.wake()

    async def wait(self) -> None:
        """Return after the watched file was written or `wake()` was called (maybe before this call)."""
        await anyio.wait_readable(self._epoll.fileno())
        # Drain before the caller reads the log: a write after this point leaves a fresh notification.
        try:
            while os.read(self._inotify, _READ_SIZE):
                pass
        except BlockingIOError:
            pass
        self._local.drain()

    async def aclose(self) -> None:
        """Release the inotify, epoll and socket descriptors."""
        if self._epoll.closed:
            return
        anyio.notify_closing(self._epoll.fileno())
        self._close_fds()

    def _close_fds(self) -> None:
        self._epoll.close()
        os.close(self._inotify)
        self._local.close()


class PollWaiter:
    """Wakes every `interval` seconds and on `wake()`: the portable fallback."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self._interval = interval
        self._local = _LocalWake()
        self._closed = False

    def wake(self) -> None:
        """End the current or next `wait()` early."""
        self._local.wake()

    async def wait(self) -> None:
        """Return after `interval` seconds or a `wake()`, whichever comes first.

        Raises:
            anyio.ClosedResourceError: the waiter was closed before or during the wait.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        with anyio.move_on_after(self._interval):
            await anyio.wait_readable(self._local.recv)
        # Closed by another task as the interval ran out: the socket pair is gone, nothing to drain.
        if self._closed:
            raise anyio.ClosedResourceError
        self._local.drain()

    async def aclose(self) -> None:
        """Release the socket pair."""
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._local.recv)
        self._local.close()


def open_waiter(watched: Path) -> Waiter:
    """An `InotifyWaiter` on `watched` where inotify works, else a `PollWaiter`."""
    if sys.platform.startswith("linux"):
        try:
            return InotifyWaiter(watched)
        except OSError:
            pass  # Out of inotify watches or an exotic file system: polling still delivers every commit.
    return PollWaiter()
