"""Model-based: random commits, branches, tags, holds, groups and policies; after each `expire` + `gc`, every
version the model keeps reads exactly as committed, every version it expires raises `udr.Expired`, the chunk
files left are exactly the ones kept versions need, and `verify` is clean.

The model knows nothing of udr's internals: it records what each commit holds, its first parent and time,
and decides expiry from the documented rules (heads, tags, holds, groups from their position, windows).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import udr

Rows = tuple[tuple[object, ...], ...]


@dataclass
class Version:
    parent: str | None
    seq: int
    time: datetime
    tables: dict[str, Rows]
    big: frozenset[int]  # seeds of the Parquet chunks table `b` holds at this version


@dataclass
class Model:
    versions: dict[str, Version] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    expired: dict[str, set[str]] = field(default_factory=dict)
    names: int = 0

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def chain(self, head: str) -> list[str]:
        out: list[str] = []
        cursor: str | None = head
        while cursor is not None:
            out.append(cursor)
            cursor = self.versions[cursor].parent
        return out

    def protected(self) -> set[str]:
        out = set(self.heads.values()) | set(self.tags.values()) | set(self.holds.values())
        for position in self.groups.values():
            floor = self.versions[position].seq
            out |= {c for c in self.chain(self.heads["main"]) if self.versions[c].seq >= floor}
        return out

    def expire(self, keep_commits: int | None, cutoff: datetime | None, tables: tuple[str, ...]) -> None:
        recent = set()
        if keep_commits is not None:
            for head in self.heads.values():
                recent |= set(self.chain(head)[:keep_commits])
        safe = self.protected()
        for cid, version in self.versions.items():
            kept = cid in recent or (cutoff is not None and version.time >= cutoff) or cid in safe
            if not kept:
                self.expired.setdefault(cid, set()).update(t for t in version.tables if t in tables)

    def is_expired(self, cid: str) -> bool:
        return bool(self.expired.get(cid))


def _rows(table: pa.Table) -> Rows:
    return tuple(sorted(tuple(row.values()) for row in table.to_pylist()))


def _snapshot(db: udr.Lake, cid: str) -> dict[str, Rows]:
    return {t: _rows(db.read(t, at=cid)) for t in db.tables(at=cid)}


def _write(db: udr.Lake, rng: random.Random, branch: str, make_big: Callable[..., pa.Table],
           big_seed: int) -> tuple[udr.Commit, bool]:
    kind = rng.choice(["upsert", "upsert", "delete", "append", "overwrite", "big"])
    if kind == "upsert":
        ids = rng.sample(range(30), rng.randint(1, 5))
        return db.upsert("a", {"id": ids, "v": [rng.randint(0, 99) for _ in ids]}, branch=branch), False
    if kind == "delete" and db.row_count("a", branch):
        return db.delete("a", f"id % 7 = {rng.randint(0, 6)}", branch=branch), False
    if kind == "big":
        return db.overwrite("b", make_big(big_seed, 40_000).select(["a"]).rename_columns(["x"]), branch=branch), True
    if kind == "overwrite":
        return db.overwrite("b", {"x": [rng.randint(0, 9) for _ in range(3)]}, branch=branch), False
    return db.append("b", {"x": [rng.randint(0, 9) for _ in range(3)]}, branch=branch), False


@pytest.mark.parametrize("seed", range(1, 7))
def test_expire_and_gc_against_a_model(db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table],
                                       chunk_files: Callable[[Path], list[Path]], seed: int) -> None:
    rng = random.Random(seed)
    model = Model()
    with db.transaction(message="setup") as tx:
        tx.create_table("a", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
        tx.create_table("b", pa.schema([("x", pa.int64())]))
    _record(db, model, db.resolve("main~1"), big=frozenset())
    _record(db, model, db.resolve("main"), big=frozenset())
    model.heads["main"] = db.resolve("main")
    big_seed = 100
    for _ in range(6):
        for _ in range(rng.randint(4, 9)):
            big_seed += 1
            _random_step(db, model, rng, make_big, big_seed)
        _expire_round(db, model, rng)
        _check(db, model, lake_path, chunk_files)
    # The run exercised both sides: versions expired, and old versions kept only by a protection.
    assert model.expired
    old = {c for c, v in model.versions.items() if v.seq < max(x.seq for x in model.versions.values()) - 8}
    assert old & model.protected() - set(model.heads.values())


def _record(db: udr.Lake, model: Model, cid: str, big: frozenset[int]) -> None:
    info = db.commit_info(cid)
    model.versions[cid] = Version(info.parents[0] if info.parents else None, info.seq, info.time,
                                  _snapshot(db, cid), big)


def _random_step(db: udr.Lake, model: Model, rng: random.Random, make_big: Callable[..., pa.Table],
                 big_seed: int) -> None:
    live = [c for c in model.versions if not model.is_expired(c)]
    step = rng.choice(["write"] * 6 + ["branch", "tag", "hold", "release", "group", "reset", "drop"])
    if step == "write":
        branch = rng.choice(sorted(model.heads))
        commit, big = _write(db, rng, branch, make_big, big_seed)
        parent = model.versions[model.heads[branch]]
        seeds = frozenset({big_seed}) if big else (parent.big if "b" not in commit.tables or
                                                   commit.message.startswith("append") else frozenset())
        _record(db, model, commit.id, seeds)
        model.heads[branch] = commit.id
    elif step == "branch":
        name = model.name("br")
        db.create_branch(name, at=rng.choice(live))
        model.heads[name] = db.resolve(None, name)
    elif step == "tag":
        name = model.name("tag")
        model.tags[name] = db.tag(name, rng.choice(live)).id
    elif step == "hold":
        name = model.name("hold")
        model.holds[name] = db.hold(name, rng.choice(live), "model").commit_id
    elif step == "release" and model.holds:
        name = rng.choice(sorted(model.holds))
        db.release(name)
        del model.holds[name]
    elif step == "group":
        name = rng.choice(["g1", "g2"])
        target = rng.choice([c for c in model.chain(model.heads["main"]) if not model.is_expired(c)])
        db.reset_group(name, to=target)
        model.groups[name] = target
    elif step == "reset" and len(model.heads) > 1:
        branch = rng.choice(sorted(set(model.heads) - {"main"}))
        target = rng.choice(list(model.versions))
        if model.is_expired(target):
            with pytest.raises(udr.Expired):
                db.reset(branch, target)
        else:
            db.reset(branch, target)
            model.heads[branch] = target
    elif step == "drop" and len(model.heads) > 1:
        branch = rng.choice(sorted(set(model.heads) - {"main"}))
        db.delete_branch(branch, force=True)
        del model.heads[branch]


def _expire_round(db: udr.Lake, model: Model, rng: random.Random) -> None:
    keep_commits = rng.choice([None, 1, 2, 4])
    times = sorted({v.time for v in model.versions.values()})
    cutoff = None
    keep_days = None
    if keep_commits is None or rng.random() < 0.5:
        k = rng.randrange(1, len(times))
        cutoff = times[k - 1] + (times[k] - times[k - 1]) / 2
        keep_days = 1.0
    table = rng.choice([None, "a", "b"])
    db.set_retention(keep_days, keep_commits, table=table)
    for other in ({None, "a", "b"} - {table}):
        db.set_retention(table=other)
    now = cutoff + timedelta(days=1) if cutoff is not None else None
    db.expire(now=now)
    model.expire(keep_commits, cutoff, ("a", "b") if table is None else (table,))
    db.gc()


def _check(db: udr.Lake, model: Model, lake_path: Path, chunk_files: Callable[[Path], list[Path]]) -> None:
    needed_big: set[int] = set()
    for cid, version in model.versions.items():
        gone = model.expired.get(cid, set())
        for table, rows in version.tables.items():
            if table in gone:
                with pytest.raises(udr.Expired):
                    db.read(table, at=cid)
            else:
                assert _rows(db.read(table, at=cid)) == rows, (cid, table)
        if "b" not in gone:
            needed_big |= version.big
    assert len(chunk_files(lake_path)) == len(needed_big)
    report = db.verify()
    assert report.ok, report.problems
    assert db.gc() == 0
