"""Retention with holds, for the facade: policies, `expire`, holds, and the `gc` and `verify` that honour them.

`expire` measures each version against its tables' policies (`udr.log.retention`): outside the window and
not protected (branch head, tag, hold, consumer group), its data becomes expired for good, in one durable
write. `collect_garbage` then keeps exactly what the versions left need (`udr.materialize.retained`), in the
log write transaction that deletes the rest, so no commit lands in between. Until the first `expire`, `gc`
keeps every chunk any commit references, as before. Safe across threads and processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta, timezone

from udr.api.context import LakeContext
from udr.api.maintenance import verify as verify_lake
from udr.errors import UsageError
from udr.log.erasure import ErasureStore
from udr.log.format import ChunkId, CommitId
from udr.log.refs import check_name
from udr.log.retention import RetentionStore, collect_live, protected, recent
from udr.materialize.retained import live_data
from udr.materialize.states import LiveData
from udr.values import ExpireReport, Hold, RetentionPolicy, VerifyReport

_DAY_US = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def set_retention(ctx: LakeContext, keep_days: float | None, keep_commits: int | None,
                  table: str | None) -> RetentionPolicy:
    """Store the lake's (or `table`'s) policy; both bounds None removes it."""
    if keep_days is not None and (isinstance(keep_days, bool) or not keep_days >= 0):
        raise UsageError(f"keep_days must be a number of days >= 0, got {keep_days!r}")
    if keep_commits is not None and (isinstance(keep_commits, bool) or not isinstance(keep_commits, int)
                                     or keep_commits < 1):
        raise UsageError(f"keep_commits must be a whole number >= 1 (heads are always kept), got {keep_commits!r}")
    policy = RetentionPolicy(float(keep_days) if keep_days is not None else None, keep_commits,
                             check_name(table, "table") if table is not None else None)
    RetentionStore(ctx.log).set_policy(policy)
    return policy


def policies(ctx: LakeContext) -> list[RetentionPolicy]:
    """Every stored policy, the lake's first."""
    found = RetentionStore(ctx.log).policies()
    return [found[name] for name in sorted(found, key=lambda n: (n is not None, n or ""))]


def expire(ctx: LakeContext, now: datetime | None, published: Callable[[], Iterable[CommitId]]) -> ExpireReport:
    """Expire the data of every version outside its tables' retention window that nothing protects (see
    `udr.log.retention.protected`), nor `published()` names (the versions published copies read)."""
    when = now if now is not None else datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise UsageError("expire(now=...) needs a timezone-aware datetime (e.g. datetime.now(timezone.utc))")
    store = RetentionStore(ctx.log)
    found = store.policies()
    now_us = (when - _EPOCH) // timedelta(microseconds=1)
    windows = {n: recent(ctx.log, n) for n in {p.keep_commits for p in found.values() if p.keep_commits}}

    def kept(policy: RetentionPolicy, commit: CommitId, time_us: int) -> bool:
        return ((policy.keep_days is not None and time_us >= now_us - policy.keep_days * _DAY_US)
                or (policy.keep_commits is not None and commit in windows[policy.keep_commits]))

    candidates: dict[CommitId, dict[str, str]] = {}
    for _, commit in ctx.log.commits_from(0) if found else ():
        time_us = ctx.log.get_commit(commit).time_us
        tables = {}
        for table in ctx.materializer.snapshot(commit):
            policy = found.get(table, found.get(None))
            if policy is not None and not kept(policy, commit, time_us):
                tables[table] = policy.describe()
        if tables:
            candidates[commit] = tables
    result = store.mark_expired(candidates, lambda: set(protected(ctx.log)) | set(published()))
    return ExpireReport(result.versions, result.tables, result.protected, when)


def hold(ctx: LakeContext, name: str, commit: CommitId, reason: str, author: str) -> Hold:
    """Place hold `name` on `commit` (see `udr.log.retention.RetentionStore.hold`)."""
    return RetentionStore(ctx.log).hold(check_name(name, "hold"), commit, reason, author)


def release(ctx: LakeContext, name: str) -> None:
    """Remove hold `name`."""
    RetentionStore(ctx.log).release(check_name(name, "hold"))


def holds(ctx: LakeContext) -> list[Hold]:
    """Every hold, by name."""
    found = RetentionStore(ctx.log).holds()
    return [found[name] for name in sorted(found)]


def collect_garbage(ctx: LakeContext, progress: Callable[[int], None] | None) -> int:
    """`gc`: once versions expired or an erasure replaced chunks, keep only the chunks and blobs the versions
    need (as readers see them); return bytes freed."""
    store = RetentionStore(ctx.log)
    if not _pruned(ctx, store):
        return ctx.log.collect_garbage(progress)

    def live() -> tuple[set[ChunkId], AbstractSet[str]]:
        # Runs under the log's write lock: the expired records, erasures and the log cannot change meanwhile.
        found = live_data(ctx.log, ctx.materializer, store.all_expired())
        return found.chunks, found.blobs.keys()

    return collect_live(ctx.log, progress, live)


def verify(ctx: LakeContext, progress: Callable[[int, int], None] | None) -> VerifyReport:
    """`verify`, counting data absent because only expired versions needed it as expired, not damage."""
    return verify_lake(ctx.log, progress, live=kept_data(ctx))


def kept_data(ctx: LakeContext) -> LiveData | None:
    """What the kept versions need once some data was expired or replaced by an erasure (verification then
    counts what only expired versions needed as expired, not damage); None when nothing ever was."""
    store = RetentionStore(ctx.log)
    return live_data(ctx.log, ctx.materializer, store.all_expired()) if _pruned(ctx, store) else None


def _pruned(ctx: LakeContext, store: RetentionStore) -> bool:
    """Whether some version's data was expired or replaced by an erasure (gc then keeps only what is live)."""
    return store.any_expired() or ErasureStore.of(ctx.log).generation() > 0
