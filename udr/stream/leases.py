"""`LeaseKeeper`: how a consumer group's subscribers keep their leases live, and tell whether another's is.

A lease record (`udr.log.positions.Lease`) names its holder's process. On one machine a lease is live while
that process runs (`LocalLeases`: nothing to renew). In a lake in object storage the holders run on many
machines, so a lease is live while its holder keeps pushing a renewal deadline forward
(`udr.remote.leases.RemoteLeases`). A subscriber calls `hold` before it records its lease (so no other
subscriber ever sees it dead in between) and `drop` after it gave the lease back. Implementations are safe
across threads.
"""

from __future__ import annotations

from typing import Protocol

from udr.log.groups import lease_alive
from udr.log.positions import Lease


class LeaseKeeper(Protocol):
    """Keeps this process's group leases live and tells whether any lease is."""

    def alive(self, lease: Lease) -> bool:
        """Whether `lease`'s holder is live."""
        ...

    def hold(self, token: str) -> None:
        """Keep the lease `token` live from now on, until `drop`.

        Raises:
            StorageError: the lease could not be made live (a lake in object storage).
        """
        ...

    def drop(self, token: str) -> None:
        """Stop keeping the lease `token` live (it was given back, or never recorded)."""
        ...


class LocalLeases:
    """Leases of one machine: live while the holder's process runs; nothing to renew."""

    def alive(self, lease: Lease) -> bool:
        """See `LeaseKeeper.alive`."""
        return lease_alive(lease)

    def hold(self, token: str) -> None:
        """See `LeaseKeeper.hold` (nothing to do: the holder's process is its lease)."""

    def drop(self, token: str) -> None:
        """See `LeaseKeeper.drop` (nothing to do)."""
