"""`udr.api.handle.StagedAck`: the ack a subscription stages in a transaction (`PendingAck`) offers what the
commit point uses of it, with the same signatures, and the commit applies it through the protocol."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import anyio
import pytest

import udr
from udr.api import committing
from udr.api.handle import Intent, StagedAck
from udr.stream.subscription import PendingAck

pytestmark = pytest.mark.anyio


def test_a_pending_ack_has_the_protocol_s_members() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(PendingAck)}
    assert fields["ack"] == inspect.get_annotations(StagedAck.ack.fget)["return"]  # type: ignore[attr-defined]
    assert inspect.signature(PendingAck.done) == inspect.signature(StagedAck.done)


async def test_the_commit_point_applies_a_staged_ack_through_the_protocol(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        first = db.append("t", {"x": [1]})
        async with db.subscribe("t", group="g") as sub:
            with anyio.fail_after(10):
                batch = await sub.__anext__()
            staged: StagedAck = sub.stage_ack(batch, earlier=0)
            handle = db._handle
            tx = db.transaction()
            committing.commit(handle, tx._staging, Intent("main", "ack only", "me"), [staged])
            tx.abort()
        assert db.groups()[0].position == first.id
