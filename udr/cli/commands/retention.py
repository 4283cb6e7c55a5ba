"""`udr retention`, `expire`, `hold`, `release`, `holds` and `erase`: how long old versions' data is kept, and
removing rows from every version."""

from __future__ import annotations

from pathlib import Path

import click

from udr.cli.common import console, open_lake, parse_ref
from udr.cli.output import say, when


@click.command()
@click.option("--keep-days", type=float, help="Keep each version's data this many days after its commit.")
@click.option("--keep-commits", type=int, help="Keep the newest N versions of every branch.")
@click.option("--table", help="Set the policy of this table only (default: the lake's).")
@click.option("--clear", is_flag=True, help="Remove the policy (of --table, or the lake's).")
@click.pass_obj
def retention(lake: Path, keep_days: float | None, keep_commits: int | None, table: str | None,
              clear: bool) -> None:
    """Show the retention policies, or set one; `udr expire` applies them."""
    if clear and (keep_days is not None or keep_commits is not None):
        raise click.UsageError("--clear takes no --keep-days or --keep-commits")
    out = console()
    with open_lake(lake) as db:
        if clear or keep_days is not None or keep_commits is not None:
            db.set_retention(keep_days, keep_commits, table=table)
        policies = db.retention()
    if not policies:
        say(out, "no retention policy: every version's data is kept")
    for policy in policies:
        say(out, policy.describe())


@click.command()
@click.pass_obj
def expire(lake: Path) -> None:
    """Expire the data of versions outside the retention window (never heads, tags, holds or what consumer
    groups need); `udr gc` then frees it."""
    with open_lake(lake) as db:
        report = db.expire()
    say(console(), f"expired {report.expired:,} versions ({report.tables_expired:,} table versions); "
                   f"{report.protected:,} older versions kept by heads, tags, holds or groups")


@click.command()
@click.argument("name")
@click.argument("ref")
@click.option("--reason", required=True, help="Why the version must be kept (recorded with the hold).")
@click.pass_obj
def hold(lake: Path, name: str, ref: str, reason: str) -> None:
    """Keep the version REF names from expiring, under hold NAME, until `udr release NAME`."""
    with open_lake(lake) as db:
        placed = db.hold(name, parse_ref(ref, "REF"), reason)
    say(console(), f"hold {placed.name} keeps {placed.commit_id[:10]}: {placed.reason}")


@click.command()
@click.argument("name")
@click.pass_obj
def release(lake: Path, name: str) -> None:
    """Remove hold NAME; its version may expire at the next `udr expire`."""
    with open_lake(lake) as db:
        db.release(name)
    say(console(), f"released hold {name}")


@click.command()
@click.pass_obj
def holds(lake: Path) -> None:
    """List the holds: name, version, who placed it, when and why."""
    out = console()
    with open_lake(lake) as db:
        found = db.holds()
    if not found:
        say(out, "no holds")
    for each in found:
        say(out, f"{each.name}  {each.commit_id[:10]}  {each.author}  {when(each.time)}  {each.reason}")


@click.command()
@click.argument("table")
@click.option("--key", "keys", multiple=True, required=True, metavar="COL=VALUE",
              help="A primary key column and its value; repeat it for each column of a composite key.")
@click.option("--reason", required=True, help="Why the rows are erased (recorded in the erasure commit).")
@click.option("--branch", default="main", show_default=True, help="Branch the erasure commit goes on.")
@click.pass_obj
def erase(lake: Path, table: str, keys: tuple[str, ...], reason: str, branch: str) -> None:
    """Remove the row of TABLE with that key from every version in history; `udr gc` then deletes its bytes."""
    from udr.cli.commands.history import key_texts, typed_key

    texts = key_texts(keys)
    with open_lake(lake) as db:
        key = typed_key(db, table, branch, texts)
        commit = db.erase(table, [key], reason=reason, branch=branch)
    say(console(), f"erased {table} {', '.join(f'{k}={v}' for k, v in key.items())} from every version in "
                   f"commit {commit.short_id} on {branch}; run `udr gc` to delete the old bytes")
