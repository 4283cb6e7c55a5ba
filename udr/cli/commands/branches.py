"""`udr branch`, `tag`, `merge`, `reset`, `revert`, `cherry-pick` and `replay`: move, name and combine versions;
no data is copied."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

import udr
from udr.cli.common import Failure, console, open_lake, parse_ref
from udr.cli.output import change_counts, conflicts_table, say


@click.command()
@click.argument("name", required=False)
@click.option("--from", "start", metavar="REF|TIME",
              help="Where the new branch starts: a branch, tag, commit id, REF~N or time (default: main).")
@click.option("-d", "--delete", is_flag=True, help="Delete branch NAME; its commits stay in the log.")
@click.option("--force", is_flag=True, help="With -d: delete even if no other branch holds its commits.")
@click.pass_obj
def branch(lake: Path, name: str | None, start: str | None, delete: bool, force: bool) -> None:
    """List the branches, create branch NAME (no data is copied), or delete it with -d."""
    if force and not delete:
        raise click.UsageError("--force only applies with -d")
    if delete and name is None:
        raise click.UsageError("give the NAME of the branch to delete")
    if start is not None and (delete or name is None):
        raise click.UsageError("--from only applies when creating branch NAME")
    out = console()
    with open_lake(lake) as db:
        if delete and name is not None:
            old = db.resolve(None, name)
            db.delete_branch(name, force=force)
            say(out, f"deleted branch {name} (was {old[:10]}; its commits stay reachable by id)")
            return
        if name is not None:
            head = db.create_branch(name, at=parse_ref(start, "--from"))
            say(out, f"created branch {name} at {head.short_id} ({head.message}); no data was copied")
            return
        heads = {each: db.commit_info(cid) for each, cid in db.branches().items()}
    width = max(len(each) for each in heads)
    # There is no checked-out branch; `*` marks main, the default of every command.
    for each, commit in sorted(heads.items()):
        say(out, f"{'*' if each == 'main' else ' '} {each:<{width}}  {commit.short_id}  {commit.message}")


@click.command()
@click.argument("name", required=False)
@click.argument("ref", required=False)
@click.option("-d", "--delete", is_flag=True, help="Delete tag NAME.")
@click.pass_obj
def tag(lake: Path, name: str | None, ref: str | None, delete: bool) -> None:
    """List the tags, tag REF (default: the head of main) as NAME, or delete tag NAME with -d. Tags never move."""
    if delete and (name is None or ref is not None):
        raise click.UsageError("-d takes the NAME of the tag to delete, and nothing else")
    out = console()
    with open_lake(lake) as db:
        if delete and name is not None:
            old = db.tags().get(name, "")  # not `resolve`: a branch of the same name would shadow the tag
            db.delete_tag(name)
            say(out, f"deleted tag {name} (was {old[:10]})")
            return
        if name is not None:
            commit = db.tag(name, parse_ref(ref, "REF"))
            say(out, f"tagged {commit.short_id} ({commit.message}) as {name}")
            return
        tagged = {each: db.commit_info(cid) for each, cid in db.tags().items()}
    if not tagged:
        say(out, "no tags yet; add one with: udr tag NAME REF")
        return
    width = max(len(each) for each in tagged)
    for each, commit in sorted(tagged.items()):
        say(out, f"{each:<{width}}  {commit.short_id}  {commit.message}")


@click.command()
@click.argument("source")
@click.option("--into", default="main", show_default=True, help="Branch to merge into.")
@click.option("--strategy", type=click.Choice(["ours", "theirs"]),
              help="Resolve every conflict by taking this side (ours: --into, theirs: SOURCE).")
@click.option("-m", "--message", help="Message of the merge commit.")
@click.pass_obj
def merge(lake: Path, source: str, into: str, strategy: str | None, message: str | None) -> None:
    """Merge SOURCE (a branch or any ref) into a branch: fast-forward, or a three-way merge commit."""
    out = console()
    with open_lake(lake) as db:
        before = db.resolve(None, into)
        try:
            commit = db.merge(source, into, message=message, strategy=strategy)
        except udr.MergeConflict as exc:
            raise _conflicts(out, exc, f"merging {source} into {into}",
                             "make both sides agree, or retry with --strategy ours or theirs") from exc
        net = db.diff_summary(before, commit.id)
    if commit.id == before:
        say(out, f"{into} already contains {source}: nothing to merge ({into} stays at {before[:10]})")
        return
    if len(commit.parents) > 1 and commit.parents[0] == before:
        say(out, f"merged {source} into {into}: merge commit {commit.short_id} "
                     f"(parents {commit.parents[0][:10]} and {commit.parents[1][:10]})")
    else:
        say(out, f"fast-forwarded {into} from {before[:10]} to {commit.short_id}: no merge commit needed")
    for name, change in sorted(net.items()):
        say(out, f"  {name} {change_counts(change)}")


def _conflicts(out: Console, exc: udr.MergeConflict, doing: str, hint: str) -> Failure:
    """Print the conflicts as a table; return the one-line error that ends the command."""
    out.print(conflicts_table(exc.conflicts))
    count = len(exc.conflicts)
    return Failure(f"{count} conflict{'s' if count != 1 else ''} {doing}; nothing was written: {hint}")


@click.command()
@click.argument("branch")
@click.argument("ref")
@click.pass_obj
def reset(lake: Path, branch: str, ref: str) -> None:
    """Move BRANCH's head to REF; the old head stays in the log, reachable by its id."""
    with open_lake(lake) as db:
        before = db.resolve(None, branch)
        commit = db.reset(branch, parse_ref(ref, "REF"))
    say(console(), f"moved {branch} from {before[:10]} to {commit.short_id} ({commit.message}); "
                    f"undo with: udr reset {branch} {before[:10]}")


@click.command()
@click.argument("commit")
@click.option("--branch", default="main", show_default=True, help="Branch to commit the inverse to.")
@click.pass_obj
def revert(lake: Path, commit: str, branch: str) -> None:
    """Commit the inverse of COMMIT on a branch; later changes to other rows and cells stay."""
    out = console()
    with open_lake(lake) as db:
        try:
            done = db.revert(commit, branch)
        except udr.MergeConflict as exc:
            raise _conflicts(out, exc, f"reverting {commit} on {branch}",
                             "later commits changed the same cells; revert or change those first") from exc
    say(out, f"reverted {commit} on {branch} in commit {done.short_id}")
    for name, change in sorted(done.tables.items()):
        say(out, f"  {name} {change_counts(change)}")


@click.command()
@click.argument("commit")
@click.option("--onto", default="main", show_default=True, help="Branch to re-apply the commit on.")
@click.pass_obj
def cherry_pick(lake: Path, commit: str, onto: str) -> None:
    """Re-apply COMMIT's changes, cell by cell, as a new commit on a branch (keeping its author and message)."""
    out = console()
    with open_lake(lake) as db:
        before = db.resolve(None, onto)
        try:
            done = db.cherry_pick(parse_ref(commit, "COMMIT"), onto=onto)
        except udr.MergeConflict as exc:
            raise _conflicts(out, exc, f"cherry-picking {commit} onto {onto}",
                             f"{onto} changed the same cells; change them back or edit by hand") from exc
    if done.id == before:
        say(out, f"{onto} already has the changes of {commit}: nothing to cherry-pick")
        return
    say(out, f"cherry-picked {commit} onto {onto} as commit {done.short_id} ({done.message})")
    for name, change in sorted(done.tables.items()):
        say(out, f"  {name} {change_counts(change)}")


@click.command()
@click.option("--onto", required=True, help="The new branch to create and replay onto.")
@click.option("--from", "start", required=True, metavar="REF|TIME", help="Where the new branch starts.")
@click.option("--until", metavar="REF|TIME", help="Last commit to replay (default: the head of --source).")
@click.option("--source", default="main", show_default=True, help="Branch whose first-parent history is replayed.")
@click.option("--skip", multiple=True, metavar="COMMIT", help="Leave this commit out; repeat for more.")
@click.option("--table", "tables", multiple=True, metavar="T", help="Replay only changes to this table; repeatable.")
@click.option("--skip-conflicts", is_flag=True, help="Leave out commits that conflict instead of stopping.")
@click.pass_obj
def replay(lake: Path, onto: str, start: str, until: str | None, source: str, skip: tuple[str, ...],
           tables: tuple[str, ...], skip_conflicts: bool) -> None:
    """Create branch --onto at --from and re-apply, in order, every later commit of --source but those skipped.

    Replayed commits keep their author, message and metadata. Compare with: udr diff main ONTO.
    """
    out = console()
    with open_lake(lake) as db:
        try:
            head = db.replay(onto, parse_ref(start, "--from"), parse_ref(until, "--until"), source=source,
                             skip=tuple(parse_ref(c, "--skip") for c in skip), tables=list(tables) or None,
                             on_conflict="skip" if skip_conflicts else "raise")
        except udr.MergeConflict as exc:
            raise _conflicts(out, exc, f"replaying {source} onto {onto}",
                             "skip the commit named above too, or pass --skip-conflicts") from exc
    say(out, f"replayed {source} onto new branch {onto}: head {head.short_id} ({head.message})")
    for each in json.loads(head.metadata.get("udr.replay_skipped", "[]")):
        say(out, f"  left out {each['commit'][:10]}: {len(each['conflicts'])} conflict(s)")
