"""Consumer-group leases of a lake in object storage: live while their holder keeps renewing them.

Group records (positions, partition owners, member and subscriber leases) travel in the remote log like
commits, so every cache agrees on them and each changes by the log's compare-and-swap. What cannot travel
there is liveness: a holder on another machine has no pid this machine can look up, and renewing through
the log would add entries forever. So each held lease has one object, `leases/<token>`, JSON
`{"host", "pid", "token", "deadline_us", "time_us"}`, that only its holder writes: created when the lease
is taken, rewritten every third of the lease time with a deadline one lease time ahead, deleted when the
lease is given back. A lease is live while its object exists and its deadline is ahead of this machine's
clock, whatever host holds it: a holder that dies, hangs or loses the store stops renewing and is dead
once its deadline passes (clocks must agree to well within the lease time). A holder whose deadline
passed may still run: its partitions may have been claimed by then, and the log's compare-and-swap then
refuses its acks, so no batch is acknowledged twice.

`RemoteLeases` renews from one daemon thread per lake handle; safe across threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from udr.errors import StorageError, UsageError
from udr.log.format import REMOTE_LEASE_PREFIX
from udr.log.positions import Lease
from udr.remote.store import ObjectStore

LEASE_SECONDS = 10.0


def lease_key(token: str) -> str:
    """The object key of lease `token`'s renewals."""
    return f"{REMOTE_LEASE_PREFIX}{token}"


class RemoteLeases:
    """The group leases this process holds in one remote lake, renewed in the background."""

    def __init__(self, store: ObjectStore, seconds: float = LEASE_SECONDS) -> None:
        """Leases in `store` that stay live `seconds` after each renewal.

        Raises:
            UsageError: `seconds` is not positive.
        """
        if seconds <= 0:
            raise UsageError(f"a group lease lasts a positive time, not {seconds} s")
        self._store = store
        self.seconds = seconds
        self._host = socket.gethostname()
        self._held: set[str] = set()
        self._deadlines: dict[str, int] = {}  # token -> the newest renewal deadline read (µs since the epoch)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def alive(self, lease: Lease) -> bool:
        """Whether `lease`'s holder renewed it within the lease time (see the module docstring)."""
        now = time.time_ns() // 1000
        with self._lock:
            # A deadline once read stands until it passes: a holder that gives its lease back deletes the
            # group record naming it too, so only a lease still recorded is ever asked about.
            if self._deadlines.get(lease.token, 0) > now:
                return True
        raw = self._store.get(lease_key(lease.token))
        if raw is None:
            return False
        try:
            doc = json.loads(raw)
            deadline = int(doc["deadline_us"]) if str(doc["token"]) == lease.token else 0
        except (ValueError, KeyError, TypeError):
            return False  # a damaged renewal proves nothing: the lease counts as lapsed
        with self._lock:
            self._deadlines[lease.token] = deadline
        return deadline > now

    def hold(self, token: str) -> None:
        """Make lease `token` live now and renew it until `drop`.

        Raises:
            StorageError: the store failed; the lease is not held.
        """
        self._renew(token)
        with self._lock:
            self._held.add(token)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_all, name="udr-leases", daemon=True)
                self._renewer.start()

    def drop(self, token: str) -> None:
        """Stop renewing lease `token` and delete its object (if that fails it lapses at its deadline); nothing
        for a token not held."""
        with self._lock:
            if token not in self._held:
                return
            self._held.discard(token)
        self._delete(token)

    def _delete(self, token: str) -> None:
        with contextlib.suppress(StorageError):  # the deadline ends it anyway
            self._store.delete(lease_key(token))

    def close(self) -> None:
        """Stop renewing (leases still held lapse at their deadline)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()

    def _renew(self, token: str) -> None:
        now = time.time_ns() // 1000
        doc = {"host": self._host, "pid": os.getpid(), "token": token, "time_us": now,
               "deadline_us": now + int(self.seconds * 1_000_000)}
        self._store.put(lease_key(token), json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())

    def _renew_all(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self._lock:
                held = sorted(self._held)
            for token in held:
                try:
                    self._renew(token)
                except StorageError:
                    continue  # renewed at the next round, or lapsed: other members then take over
                with self._lock:
                    gone = token not in self._held
                if gone:  # dropped while being renewed: delete the object that renewal wrote again
                    self._delete(token)
