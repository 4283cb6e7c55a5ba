r"""`udr log --graph`: ASCII lanes of the branch and merge structure, like `git log --graph`.

`graph_rows` is pure, from commit ids and parents to rows of text: it knows nothing of lakes or terminals,
so it can be tested with made-up ids; `log_graph` gathers a lake's commits, branches and tags for it. Lanes sit on even
character columns; `/` and `\` between them move an edge one lane per row, so edges never need more than
the four characters `*`, `|`, `/`, `\`. A lane may pass a stationary lane (drawn beside it, as git does),
which keeps every layout drawable at the cost of an occasional crossing.
"""

from __future__ import annotations

from collections.abc import Sequence

import udr
from udr.cli.output import when

Node = tuple[str, Sequence[str]]


def graph_rows(nodes: Sequence[Node]) -> list[tuple[str, str | None]]:
    r"""Draw the lanes of a commit graph, one text row per commit plus connector rows between them.

    Args:
        nodes: `(id, parent ids)` pairs, every child before its parents (e.g. newest first by log
            position). Parents missing from `nodes` are left out of the drawing.

    Returns:
        `(graph, id)` rows, top to bottom: `id` is the commit drawn as `*` on that row, or None for a
        connector row of `|`, `/` and `\`. Trailing spaces are stripped.
    """
    known = {node_id for node_id, _ in nodes}
    lanes: list[str] = []
    rows: list[tuple[str, str | None]] = []
    for node_id, parents in nodes:
        if node_id not in lanes:
            lanes.append(node_id)
        col = lanes.index(node_id)
        rows.append((_cells({i: "|" for i in range(len(lanes))} | {col: "*"}), node_id))
        # Every lane after this row, tagged with the column it leaves from (a merge's parents leave from `col`).
        wanted = [p for p in dict.fromkeys(parents) if p in known]
        moved = [(c, lane) for c, lane in enumerate(lanes[:col])]
        moved += [(col, parent) for parent in wanted]
        moved += [(c + col + 1, lane) for c, lane in enumerate(lanes[col + 1:])]
        lanes = list(dict.fromkeys(lane for _, lane in moved))
        edges = [(source, lanes.index(lane)) for source, lane in moved]
        rows.extend((row, None) for row in _transitions(edges))
    return rows


def _transitions(edges: list[tuple[int, int]]) -> list[str]:
    r"""Connector rows moving each edge from its source to its target column, one column per row.

    Edges moving right go first, then those moving left, so a `\` and a `/` never compete for one cell.
    """
    rows: list[str] = []
    at = [source for source, _ in edges]
    for direction in (1, -1):
        while any((target - pos) * direction > 0 for pos, (_, target) in zip(at, edges, strict=True)):
            cells: dict[int, str] = {}
            for i, (_, target) in enumerate(edges):
                pos = at[i]
                if (target - pos) * direction > 0:
                    cells[2 * pos + direction] = "\\" if direction > 0 else "/"
                    at[i] = pos + direction
                else:
                    cells.setdefault(2 * pos, "|")
            rows.append(_text(cells))
    return rows


def _cells(lanes: dict[int, str]) -> str:
    return _text({2 * col: char for col, char in lanes.items()})


def _text(cells: dict[int, str]) -> str:
    if not cells:
        return ""
    line = [" "] * (max(cells) + 1)
    for pos, char in cells.items():
        line[pos] = char
    return "".join(line).rstrip()


def log_graph(db: udr.Lake, branch: str | None, limit: int | None) -> list[str]:
    """The lines of `udr log --graph`: the commits reachable from `branch` (None: from every branch),
    newest first, each decorated with the branches and tags pointing at it.

    Raises:
        RefNotFound: no such branch.
    """
    heads = db.branches()
    commits: dict[str, udr.Commit] = {}
    for name in heads if branch is None else [branch]:
        for commit in db.log(name):
            commits.setdefault(commit.id, commit)
    names: dict[str, list[str]] = {}
    for name, head in sorted(heads.items(), key=lambda item: (item[0] != "main", item[0])):
        names.setdefault(head, []).append(name)
    for name, target in sorted(db.tags().items()):
        names.setdefault(target, []).append(f"tag: {name}")
    ordered = sorted(commits.values(), key=lambda c: c.seq, reverse=True)
    lines: list[str] = []
    shown = 0
    for drawing, cid in graph_rows([(c.id, c.parents) for c in ordered]):
        if cid is None:
            lines.append(drawing)
            continue
        commit = commits[cid]
        decoration = f" ({', '.join(names[cid])})" if cid in names else ""
        subject = commit.message.splitlines()[0] if commit.message else ""
        lines.append(f"{drawing} {commit.short_id}{decoration} {subject} [{commit.author}, {when(commit.time)}]")
        shown += 1
        if shown == limit:
            break
    return lines
