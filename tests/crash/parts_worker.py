"""A consumer process for the parts crash test, run as `python parts_worker.py LAKE MAX_ROWS PAUSE`.

It consumes table `big` with group `g` in parts of MAX_ROWS rows; for each part it appends the part's ids
(and the part number) to `seen` and acknowledges the part in the same transaction (`Transaction.ack`),
then prints `acked PART PARTS` and sleeps PAUSE seconds (so a parent's kill can land between parts). It
exits 0 after the last part.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pyarrow as pa

import udr

BIG = pa.schema([("id", pa.int64()), ("pad", pa.int64())])
SEEN = pa.schema([("id", pa.int64()), ("part", pa.int64())])


def setup(lake: Path, rows: int) -> None:
    """A lake whose `big` table got `rows` rows in one commit, and an empty `seen`."""
    with udr.open(lake) as db:
        with db.transaction(message="setup") as tx:
            tx.create_table("big", BIG)
            tx.create_table("seen", SEEN)
        db.append("big", {"id": list(range(rows)), "pad": [7] * rows})


async def consume(lake: Path, max_rows: int, pause: float) -> None:
    with udr.open(lake) as db:
        async with db.subscribe("big", group="g", start="earliest",
                                max_rows=max_rows) as sub:
            async for batch in sub:
                ids = batch.changes.column("id")
                with db.transaction(message=f"part {batch.part}") as tx:
                    tx.append("seen", {"id": ids, "part": pa.array([batch.part] * len(ids), pa.int64())})
                    tx.ack(sub, batch)
                print(f"acked {batch.part} {batch.parts}", flush=True)
                if batch.last_part:
                    return
                await anyio.sleep(pause)


if __name__ == "__main__":
    anyio.run(consume, Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
