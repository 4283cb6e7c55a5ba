"""The ref log: every move of a branch or tag is recorded durably with who, when, from, to and why
(`db.reflog`), a reset that hides commits says so, and the hidden commits stay readable by id."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import udr


def _moves(db: udr.Lake, name: str | None = None) -> list[tuple[str, str, str | None, str | None]]:
    return [(m.name, m.action, m.old, m.new) for m in db.reflog(name)]


def test_each_kind_of_move_is_recorded_newest_first(db: udr.Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDR_AUTHOR", "ann")
    root = db.resolve("main")
    first = db.append("t", pa.table({"k": [1], "v": [1]}), author="bob", message="load t")
    db.create_branch("dev")
    second = db.append("t", pa.table({"k": [2], "v": [2]}), branch="dev")
    merged = db.merge("dev")  # fast-forward
    assert merged.id == second.id
    db.tag("v1")
    reverted = db.revert(second.id)
    db.reset("main", first.id)
    db.delete_tag("v1")
    db.delete_branch("dev", force=True)
    assert _moves(db) == [
        ("dev", "delete", second.id, None),
        ("v1", "delete", second.id, None),
        ("main", "reset", reverted.id, first.id),
        ("main", "revert", second.id, reverted.id),
        ("v1", "create", None, second.id),
        ("main", "merge", first.id, second.id),
        ("dev", "commit", first.id, second.id),
        ("dev", "create", None, first.id),
        ("main", "commit", root, first.id),
        ("main", "create", None, root),
    ]
    load = db.reflog("main")[-2]
    assert (load.author, load.message, load.kind) == ("bob", "load t", "branch")
    assert load.time == db.commit_info(first.id).time
    assert {m.author for m in db.reflog() if m.action in ("reset", "create", "delete")} == {"ann", "udr"}
    assert [m.position for m in db.reflog()] == list(range(9, -1, -1))
    assert db.reflog("v1")[0].kind == "tag"


def test_a_merge_commit_is_recorded_as_a_merge(db: udr.Lake) -> None:
    db.append("a", pa.table({"x": [1]}))
    db.create_branch("dev")
    db.append("b", pa.table({"x": [1]}), branch="dev")
    db.append("c", pa.table({"x": [1]}))
    merged = db.merge("dev", message="bring dev in")
    top = db.reflog("main")[0]
    assert (top.action, top.new, top.message) == ("merge", merged.id, "bring dev in")
    assert len(db.commit_info(merged.id).parents) == 2


def test_a_reset_that_hides_commits_is_an_audit_event_and_they_stay_readable(db: udr.Lake) -> None:
    db.append("t", pa.table({"x": [1]}))
    start = db.resolve("main")
    bad = db.append("t", pa.table({"x": [666]}), message="bad import")
    db.reset("main", start)
    event = db.reflog("main")[0]
    assert event.action == "reset" and (event.old, event.new) == (bad.id, start)
    assert "hiding commits" in event.message
    assert db.read("t")["x"].to_pylist() == [1]
    assert bad.id not in {c.id for c in db.log()}
    # Hidden, not gone: readable by id, and a forward reset does not claim to hide anything.
    assert db.read("t", at=bad.id)["x"].to_pylist() == [1, 666]
    assert db.commit_info(bad.id[:12]).message == "bad import"
    db.reset("main", bad.id)
    assert "hiding" not in db.reflog("main")[0].message


def test_a_failed_move_records_nothing(db: udr.Lake) -> None:
    db.create_branch("dev")
    before = db.reflog()
    with pytest.raises(udr.UsageError):
        db.create_branch("dev")
    with pytest.raises(udr.UsageError):
        db.delete_branch("main")
    with pytest.raises(udr.RefNotFound):
        db.reset("main", "nope")
    assert db.reflog() == before


def test_reflog_of_an_unknown_name_is_an_error_but_a_deleted_ref_keeps_its_history(db: udr.Lake) -> None:
    db.create_branch("gone")
    db.delete_branch("gone")
    assert [m.action for m in db.reflog("gone")] == ["delete", "create"]
    with pytest.raises(udr.RefNotFound, match=r"no branch or tag named .never. ever moved"):
        db.reflog("never")


def test_the_ref_log_is_durable_across_handles(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"x": [1]}))
        db.tag("v1")
        expected = db.reflog()
    with udr.open(tmp_path / "lake") as db:
        assert db.reflog() == expected
        db.rebuild()
        assert db.reflog() == expected  # part of the log, not derived state


def test_a_lake_without_a_ref_log_opens_reads_and_starts_recording(tmp_path: Path) -> None:
    golden = Path(__file__).resolve().parents[1] / "golden" / "v2" / "lake"
    lake = Path(shutil.copytree(golden, tmp_path / "lake"))
    with udr.open(lake, create=False) as db:
        assert db.reflog() == []
        assert db.verify().ok and db.read("events").num_rows == 2
        db.tag("audit-start")
        assert _moves(db) == [("audit-start", "create", None, db.resolve("main"))]


# -- model: random ref operations against a list of expected moves ------------------------------------


class RefLogModel(RuleBasedStateMachine):
    """Random create/commit/reset/delete/tag/untag; after each step the ref log equals the moves a model
    predicted from the refs before and after."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    @initialize()
    def open_lake(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.db = udr.open(Path(self.dir.name) / "lake")
        self.expected: list[tuple[str, str, str | None, str | None]] = [
            ("main", "create", None, self.db.resolve("main"))]

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()

    def _branches(self) -> list[str]:
        return sorted(self.db.branches())

    @rule(name=st.sampled_from(["a", "b", "c"]), data=st.data())
    def create(self, name: str, data: st.DataObject) -> None:
        if name in self.db.branches() or name in self.db.tags():
            return
        source = data.draw(st.sampled_from(self._branches()))
        head = self.db.resolve(source)
        self.db.create_branch(name, from_=source)
        self.expected.append((name, "create", None, head))

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        branch = data.draw(st.sampled_from(self._branches()))
        before = self.db.resolve(branch)
        self.counter += 1
        made = self.db.append("t", pa.table({"x": [self.counter]}), branch=branch)
        self.expected.append((branch, "commit", before, made.id))

    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        branch = data.draw(st.sampled_from(self._branches()))
        # Ordered by log position, not id: ids hash commit times, and hypothesis must replay the same choices.
        commits = sorted({(c.seq, c.id) for b in self._branches() for c in self.db.log(b)})
        target = data.draw(st.sampled_from(commits))[1]
        before = self.db.resolve(branch)
        self.db.reset(branch, target)
        self.expected.append((branch, "reset", before, target))

    @precondition(lambda self: len(self.db.branches()) > 1)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        branch = data.draw(st.sampled_from([b for b in self._branches() if b != "main"]))
        before = self.db.resolve(branch)
        self.db.delete_branch(branch, force=True)
        self.expected.append((branch, "delete", before, None))

    @rule(name=st.sampled_from(["t1", "t2"]), data=st.data())
    def tag(self, name: str, data: st.DataObject) -> None:
        if name in self.db.tags():
            old = self.db.tags()[name]
            self.db.delete_tag(name)
            self.expected.append((name, "delete", old, None))
            return
        if name in self.db.branches():
            return
        branch = data.draw(st.sampled_from(self._branches()))
        self.db.tag(name, branch)
        self.expected.append((name, "create", None, self.db.resolve(branch)))

    @invariant()
    def ref_log_matches(self) -> None:
        if hasattr(self, "db"):
            assert _moves(self.db) == list(reversed(self.expected))
            for name in {n for n, *_ in self.expected}:
                assert _moves(self.db, name) == [m for m in reversed(self.expected) if m[0] == name]


TestRefLogModel = RefLogModel.TestCase
TestRefLogModel.settings = settings(max_examples=25, stateful_step_count=12,
                                    suppress_health_check=[HealthCheck.too_slow])


def test_replay_and_cherry_pick_credit_whoever_ran_them_while_commits_keep_their_authors(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        a = db.append("t", {"x": [1]}, author="ann")
        b = db.append("t", {"x": [2]}, author="bob")
        db.append("t", {"x": [3]}, author="cy")
        db.replay(onto="inv", start=a.id, skip=(b.id,), author="erin")
        moves = db.reflog("inv")
        assert (moves[0].action, moves[0].author) == ("replay", "erin")
        assert db.log(branch="inv", limit=1)[0].author == "cy"
        db.cherry_pick(b.id, onto="inv", author="dora")
        assert (db.reflog("inv")[0].action, db.reflog("inv")[0].author) == ("cherry-pick", "dora")
