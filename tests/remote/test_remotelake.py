"""`udr.remote.remotelake.RemoteLake`: the mirror of an open remote lake offers every member the facade uses,
each method with the protocol's parameters, and works through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from protocols import assert_offers, public_methods

import udr
from udr.remote.mirror import Mirror
from udr.remote.remotelake import RemoteLake, chunk_key

_METHODS = public_methods(RemoteLake)


@pytest.mark.parametrize("name", _METHODS)
def test_the_mirror_takes_each_method_with_the_protocol_s_parameters(name: str) -> None:
    assert_offers(Mirror, RemoteLake, name, extra_optional=True)


def test_an_open_remote_lake_is_reached_through_the_protocol(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as db:
        db.append("t", {"x": list(range(200_000))})  # a chunk file, not inline rows
        remote: RemoteLake | None = db._handle.remote
        assert remote is not None and remote.url == url and remote.store.url == url
        assert remote.pull() == 0
        needed = db._handle.ctx.log.referenced_chunks()
        (chunk,) = needed
        assert remote.collect_garbage(needed, set()) == 0
        assert remote.store.exists(chunk_key(chunk))
        assert remote.purge_log(set()) == 0
        assert remote.collect_garbage(set(), {chunk}) > 0
        assert not remote.store.exists(chunk_key(chunk))
