"""The ASCII lanes of `udr log --graph`: one pure function from commits and parents to rows of text.

`graph_rows` knows nothing of lakes or terminals, so it can be tested with made-up ids. Lanes sit on even
character columns; `/` and `\\` between them move an edge one lane per row, so edges never need more than
the four characters `*`, `|`, `/`, `\\`. A lane may pass a stationary lane (drawn beside it, as git does),
which keeps every layout drawable at the cost of an occasional crossing.
"""

from __future__ import annotations

from collections.abc import Sequence

Node = tuple[str, Sequence[str]]


def graph_rows(nodes: Sequence[Node]) -> list[tuple[str, str | None]]:
    """Draw the lanes of a commit graph, one text row per commit plus connector rows between them.

    Args:
        nodes: `(id, parent ids)` pairs, every child before its parents (e.g. newest first by log
            position). Parents missing from `nodes` are left out of the drawing.

    Returns:
        `(graph, id)` rows, top to bottom: `id` is the commit drawn as `*` on that row, or None for a
        connector row of `|`, `/` and `\\`. Trailing spaces are stripped.
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
    """Connector rows moving each edge from its source to its target column, one column per row.

    Edges moving right go first, then those moving left, so a `\\` and a `/` never compete for one cell.
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
