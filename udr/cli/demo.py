"""`udr demo`: a guided tour on a fresh lake, one numbered step per guarantee UDR makes.

Each step is a function `(db, console) -> None` in `STEPS`, with a title and a line on why it matters;
add a step by adding an entry (later steps see the lake the earlier ones left). The data is generated
deterministically (`random.Random(42)`), so two runs print the same rows; only ids and times differ.
The demo never touches an existing lake: it runs in a new temp directory or in an empty PATH.
"""

from __future__ import annotations

import asyncio
import random
import shlex
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

import udr
from udr.cli.graph import log_graph

PITCH = "if you ever held your breath during a pipeline run, this is for you"

_CUSTOMERS = 2_000
_ORDERS = 10_000
_COUNTRIES = ("DE", "FR", "NL", "US", "JP", "BR", "IN", "ES")
_FIRST_DAY = date(2024, 1, 1)


class _PipelineError(RuntimeError):
    """The failure step 2 raises on purpose, so only it is caught."""


def run_demo(path: Path | str | None, console: Console) -> None:
    """Run every step of `STEPS` on a new lake at `path` (a directory or the URL of a lake in object storage;
    default: a new temp directory).

    Raises:
        UsageError: `path` exists and is not an empty directory, or already holds a lake.
    """
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="udr-demo-"))
    elif isinstance(path, str):
        _check_no_remote_lake(path)
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise udr.UsageError(f"{path} is not empty; the demo needs a new or empty directory")
    started = time.perf_counter()
    console.print(Panel(Text(PITCH, style="italic"), title="[bold]UDR demo[/bold]", expand=False))
    console.print(f"A fresh lake at [bold]{path}[/bold]: one directory, no server.\n")
    with udr.open(path) as db:
        for number, (title, why, step) in enumerate(STEPS, start=1):
            console.rule(f"[bold]Step {number}/{len(STEPS)}: {title}[/bold]", align="left")
            console.print(Text(why, style="dim italic"))
            step(db, console)
            console.print()
    console.rule("[bold]Done[/bold]", align="left")
    console.print(f"The demo took {time.perf_counter() - started:.1f} s. The lake stays at {path}; explore it:")
    lake = shlex.quote(str(path))
    # Unwrapped, so the commands stay copyable on a narrow terminal.
    console.print(Text(f'  udr --lake {lake} sql "SELECT status, count(*) FROM orders GROUP BY status"'),
                  soft_wrap=True)
    console.print(Text(f"  udr --lake {lake} log --graph"), soft_wrap=True)


def _check_no_remote_lake(url: str) -> None:
    try:
        udr.open(url, create=False).close()
    except udr.LakeNotFound:
        return
    raise udr.UsageError(f"{url} already holds a lake; the demo needs a new one")


# -- data ------------------------------------------------------------------------------------------------


def _customers(rng: random.Random, first_id: int, count: int) -> pa.Table:
    ids = list(range(first_id, first_id + count))
    return pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "name": [f"customer {i}" for i in ids],
        "country": [rng.choice(_COUNTRIES) for _ in ids],
    })


def _orders(rng: random.Random, first_id: int, count: int, customers: int) -> pa.Table:
    ids = list(range(first_id, first_id + count))
    return pa.table({
        "order_id": pa.array(ids, pa.int64()),
        "customer_id": pa.array([rng.randrange(1, customers + 1) for _ in ids], pa.int64()),
        "amount": [round(rng.uniform(5, 500), 2) for _ in ids],
        "status": ["placed"] * count,
        "ordered_on": [_FIRST_DAY + timedelta(days=rng.randrange(0, 60)) for _ in ids],
    })


def _counts(db: udr.Lake) -> dict[str, int]:
    rows = db.sql("SELECT 'customers', count(*) FROM customers UNION ALL SELECT 'orders', count(*) FROM orders")
    return dict(rows.fetchall())


def _print_relation(console: Console, rows: pa.Table) -> None:
    grid = Table()
    for field in rows.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        grid.add_column(field.name, justify="right" if numeric else "left")
    for values in zip(*(column.to_pylist() for column in rows.columns), strict=True):
        grid.add_row(*(Text(str(v)) for v in values))
    console.print(grid)


def _show_sql(console: Console, query: str) -> None:
    console.print(Syntax(query.strip(), "sql", theme="ansi_dark", background_color="default", word_wrap=True))


# -- steps -----------------------------------------------------------------------------------------------


def _atomic_load(db: udr.Lake, console: Console) -> None:
    rng = random.Random(42)
    customers = _customers(rng, 1, _CUSTOMERS)
    orders = _orders(rng, 1, _ORDERS, _CUSTOMERS)
    with db.transaction(message="load customers and orders", metadata={"source": "udr demo"}) as tx:
        tx.create_table("customers", customers.schema, primary_key=["customer_id"])
        tx.create_table("orders", orders.schema, primary_key=["order_id"])
        tx.append("customers", customers)
        tx.append("orders", orders)
        commit = tx.commit()
    console.print(f"One `with db.transaction():` block wrote {customers.num_rows:,} customers and "
                  f"{orders.num_rows:,} orders.")
    console.print(f"Commit [bold]{commit.short_id}[/bold] made both visible at one instant: a reader sees "
                  "both tables or neither, never orders without their customers.")


def _failed_transaction(db: udr.Lake, console: Console) -> None:
    rng = random.Random(7)
    before_counts = _counts(db)
    before_head = db.resolve(None)
    before_log = len(db.log())
    try:
        with db.transaction(message="nightly refresh") as tx:
            tx.append("customers", _customers(rng, _CUSTOMERS + 1, 250))
            deleted = tx.delete("orders", where="amount < 50")
            console.print(f"Inside the transaction: added 250 customers and deleted {deleted:,} orders ...")
            raise _PipelineError("the upstream API timed out halfway through the refresh")
    except _PipelineError as exc:
        console.print(f"... then the pipeline failed: [red]{exc}[/red]")
    after_counts = _counts(db)
    grid = Table("", "before", "after the failure")
    for name in ("customers", "orders"):
        grid.add_row(f"{name} rows", f"{before_counts[name]:,}", f"{after_counts[name]:,}")
    grid.add_row("main head", before_head[:10], db.resolve(None)[:10])
    grid.add_row("commits in the log", str(before_log), str(len(db.log())))
    console.print(grid)
    unchanged = after_counts == before_counts and db.resolve(None) == before_head and len(db.log()) == before_log
    if unchanged:
        console.print("[green]Nothing of the failed transaction is visible[/green]: no half-refreshed tables "
                      "to clean up, just fix the cause and run it again.")
    else:
        console.print("[red]The failed transaction left changes behind: this is a bug in udr, please report it."
                      "[/red]")


_JOIN = """
SELECT c.country, count(*) AS orders, round(sum(o.amount), 2) AS revenue
FROM orders o JOIN customers c USING (customer_id)
GROUP BY c.country
ORDER BY revenue DESC
LIMIT 5
"""


def _sql_join(db: udr.Lake, console: Console) -> None:
    _show_sql(console, _JOIN)
    _print_relation(console, db.sql(_JOIN).to_arrow_table())
    console.print("Every table is a DuckDB view over the lake's Parquet chunks: no export, no copy.")


_STATUS_THEN_AND_NOW = """
SELECT status, coalesce(t0.n, 0) AS "main~1", t1.n AS "main"
FROM (SELECT status, count(*) AS n FROM "orders@main~1" GROUP BY ALL) t0
FULL JOIN (SELECT status, count(*) AS n FROM orders GROUP BY ALL) t1
USING (status) ORDER BY status
"""

_CHANGED_ORDERS = """
SELECT o.order_id, old.status AS was, o.status AS "is"
FROM orders o JOIN "orders@main~1" old USING (order_id)
WHERE o.status <> old.status
ORDER BY o.order_id
LIMIT 3
"""


def _time_travel(db: udr.Lake, console: Console) -> None:
    rng = random.Random(1)
    current = db.read("orders", where="order_id % 33 = 0")
    shipped = current.set_column(current.schema.get_field_index("status"), "status",
                                 pa.array(["shipped"] * current.num_rows))
    new_orders = _orders(rng, _ORDERS + 1, 500, _CUSTOMERS)
    commit = db.upsert("orders", pa.concat_tables([shipped, new_orders]), message="day 2: shipments and new orders")
    change = commit.tables["orders"]
    console.print(f"A second day's commit {commit.short_id} upserted orders: {change.inserted:,} new, "
                  f"{change.updated:,} shipped.")
    before = db.sql("SELECT count(*) FROM orders", at="main~1").fetchall()[0][0]
    now = db.sql("SELECT count(*) FROM orders").fetchall()[0][0]
    console.print(f'db.sql("SELECT count(*) FROM orders", at="main~1") -> {before:,}; at the head -> {now:,}')
    console.print('Inside SQL, "orders@main~1" names the table one commit ago, so you can compare versions:')
    _show_sql(console, _STATUS_THEN_AND_NOW)
    _print_relation(console, db.sql(_STATUS_THEN_AND_NOW).to_arrow_table())
    _show_sql(console, _CHANGED_ORDERS)
    _print_relation(console, db.sql(_CHANGED_ORDERS).to_arrow_table())
    console.print("Old versions stay readable until you decide otherwise: audit, debug or reproduce any run.")


_DISCOUNT = """
SELECT o.order_id, o.customer_id, round(o.amount * 0.9, 2) AS amount, o.status, o.ordered_on
FROM orders o JOIN customers c USING (customer_id)
WHERE c.country = 'DE'
"""

_BRANCH_VS_MAIN = """
SELECT c.country, round(sum(m.amount), 2) AS main, round(sum(e.amount), 2) AS experiment
FROM orders m JOIN "orders@experiment" e USING (order_id)
JOIN customers c ON c.customer_id = m.customer_id
WHERE c.country IN ('DE', 'FR')
GROUP BY c.country ORDER BY c.country
"""

_CHANGED_ON_BOTH_SIDES = """
SELECT o.order_id, fork.amount AS "amount was", o.amount, fork.status AS "status was", o.status
FROM orders o JOIN "orders@{fork}" fork USING (order_id)
WHERE o.amount <> fork.amount AND o.status <> fork.status
ORDER BY o.order_id
LIMIT 3
"""


def _branching(db: udr.Lake, console: Console) -> None:
    chunks = db.stats().chunks
    fork = db.create_branch("experiment")
    console.print(f'db.create_branch("experiment") gave commit {fork.short_id} a second name: the lake holds '
                  f"{chunks} chunks before and {db.stats().chunks} after. Nothing was copied.")
    commit = db.upsert("orders", db.sql(_DISCOUNT, "experiment").to_arrow_table(), branch="experiment",
                       message="experiment: 10% off for DE customers")
    console.print(f"On the branch, commit {commit.short_id} upserted {commit.tables['orders'].updated:,} orders "
                  "with a recomputed amount. In SQL, \"orders@experiment\" is the branch's table:")
    _show_sql(console, _BRANCH_VS_MAIN)
    _print_relation(console, db.sql(_BRANCH_VS_MAIN).to_arrow_table())
    if db.resolve("main") == fork.id:
        console.print(f"[green]main is unchanged[/green]: still at {fork.short_id}, its readers never saw the "
                      "experiment.")
    else:
        console.print("[red]main moved while only the branch was written: this is a bug in udr, please report "
                      "it.[/red]")
    current = db.read("orders", where="status = 'shipped'")
    delivered = current.set_column(current.schema.get_field_index("status"), "status",
                                   pa.array(["delivered"] * current.num_rows))
    day3 = db.upsert("orders", delivered, message="day 3: shipped orders delivered")
    console.print(f"Meanwhile main moved on: commit {day3.short_id} marked {day3.tables['orders'].updated:,} "
                  "shipped orders delivered.")
    merge = db.merge("experiment")
    console.print(f'db.merge("experiment") made merge commit [bold]{merge.short_id}[/bold] with parents '
                  f"{merge.parents[0][:10]} (main) and {merge.parents[1][:10]} (experiment). It merges per row "
                  "and per column, so orders changed on both sides keep both changes:")
    query = _CHANGED_ON_BOTH_SIDES.format(fork=fork.short_id)
    _show_sql(console, query)
    _print_relation(console, db.sql(query).to_arrow_table())
    console.print("Had both sides changed the same cell, the merge would raise udr.MergeConflict and write "
                  "nothing. `udr log --graph` draws the result:")
    for line in log_graph(db, None, 4):
        console.print(Text(line), soft_wrap=True)


_SUBSCRIBER = """
async with db.subscribe(["customers", "orders"], start="latest") as sub:
    async for batch in sub:  # one udr.ChangeBatch per commit and table
        react(batch.table, batch.changes)
"""


def _react_in_real_time(db: udr.Lake, console: Console) -> None:
    console.print(Syntax(_SUBSCRIBER.strip(), "python", theme="ansi_dark", background_color="default"))
    seen = asyncio.run(_watch_new_customer(db))
    grid = Table("commit", "table", "change rows", "delivered after the commit")
    for batch, delivered in seen:
        delay = (delivered - batch.commit.time.timestamp()) * 1000
        grid.add_row(batch.commit.short_id, batch.table, f"{batch.changes.num_rows:,}", f"{delay:.1f} ms")
    console.print(grid)
    console.print("The subscriber woke the moment the transaction committed and got both tables' changes of "
                  "that one commit, in order. Consumer groups (group=...) resume after their last ack, and "
                  "tx.ack(sub, batch) commits a consumer's outputs with its position: exactly-once, no broker.")


async def _watch_new_customer(db: udr.Lake) -> list[tuple[udr.ChangeBatch, float]]:
    rng = random.Random(5)
    customer_id = _CUSTOMERS + 1_000
    customer = _customers(rng, customer_id, 1)
    orders = _orders(rng, _ORDERS + 1_000, 3, _CUSTOMERS)
    orders = orders.set_column(1, "customer_id", pa.array([customer_id] * orders.num_rows, pa.int64()))

    def new_customer_with_orders() -> None:
        with db.transaction(message="new customer with first orders") as tx:
            tx.append("customers", customer)
            tx.append("orders", orders)

    seen: list[tuple[udr.ChangeBatch, float]] = []

    async def first_two(sub: udr.Subscription) -> None:
        async for batch in sub:
            seen.append((batch, time.time()))
            if len(seen) == 2:
                return

    async with db.subscribe(["customers", "orders"], start="latest") as sub:
        writer = asyncio.ensure_future(asyncio.to_thread(new_customer_with_orders))
        await asyncio.wait_for(first_two(sub), 60)
        await writer
    return seen


def _log_verify_stats(db: udr.Lake, console: Console) -> None:
    grid = Table("commit", "message", "changes (+ins ~upd -del)")
    for commit in db.log():
        changes = ", ".join(f"{name} +{c.inserted:,} ~{c.updated:,} -{c.deleted:,}"
                            for name, c in sorted(commit.tables.items()))
        grid.add_row(commit.short_id, Text(commit.message), changes or "-")
    console.print(grid)
    report = db.verify()
    if report.ok:
        console.print(f"db.verify(): [green]ok[/green], {report.commits_checked} commits and "
                      f"{report.chunks_checked} chunks checked against their BLAKE3 hashes.")
    else:
        console.print(f"db.verify(): [red]{len(report.problems)} problems[/red]: " + "; ".join(report.problems))
    figures = db.stats()
    console.print(f"db.stats(): {figures.commits} commits, {figures.chunks} chunks, "
                  f"{figures.stored_bytes:,} bytes stored for {figures.logical_bytes:,} logical "
                  f"(dedup {figures.dedup_ratio:.2f}x).")


STEPS: tuple[tuple[str, str, Callable[[udr.Lake, Console], None]], ...] = (
    ("An atomic transaction over two tables",
     "Related tables must change together, or readers see orders whose customers do not exist yet.",
     _atomic_load),
    ("A transaction that fails midway",
     "Pipelines crash halfway; a half-written refresh is worse than none.",
     _failed_transaction),
    ("SQL across tables",
     "Reading must not need an export step: query the lake where it lies.",
     _sql_join),
    ("Time travel",
     "When a number looks wrong, you need to see what the data was before the last run.",
     _time_travel),
    ("Zero-copy branches and a three-way merge",
     "Trying a change on production data should neither copy the data nor put production at risk.",
     _branching),
    ("Reacting to a commit in real time",
     "Downstream jobs should react to new data at once, without polling or running a broker.",
     _react_in_real_time),
    ("The log, verify and stats",
     "Every change is a commit you can name, and every byte can be checked against its hash.",
     _log_verify_stats),
)
