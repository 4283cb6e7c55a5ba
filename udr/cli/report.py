"""The audit report as a document: JSON, Markdown or HTML text of a `udr.AuditReport`.

Every format holds the same facts in the same order: the window, the commits (id, time, author, message,
metadata, counts per table), the ref moves, the verification's problems, and a last line with the verdict.
"""

from __future__ import annotations

import html
import json

import udr

FORMATS = ("md", "json", "html")


def report_doc(report: udr.AuditReport) -> dict[str, object]:
    """The report as plain JSON-ready data."""
    check = report.verification
    return {
        "window": {"since": report.since, "until": report.until, "table": report.table},
        "commits": [{"id": c.id, "seq": c.seq, "parents": list(c.parents), "branch": c.branch,
                     "time": c.time.isoformat(), "author": c.author, "message": c.message, "metadata": c.metadata,
                     "tables": {name: {"inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
                                for name, t in sorted(c.tables.items())}}
                    for c in report.commits],
        "ref_moves": [{"ref": m.name, "kind": m.kind, "action": m.action, "old": m.old, "new": m.new,
                       "time": m.time.isoformat(), "author": m.author, "message": m.message}
                      for m in report.ref_moves],
        "verification": {"ok": check.ok, "commits_checked": check.commits_checked,
                         "chunks_checked": check.chunks_checked, "blobs_checked": check.blobs_checked,
                         "problems": list(check.problems)},
        "verdict": report.verdict,
    }


def _counts(tables: dict[str, udr.TableChange]) -> str:
    return ", ".join(f"{name} +{t.inserted} ~{t.updated} -{t.deleted}" for name, t in sorted(tables.items()))


def _short(cid: str | None) -> str:
    return cid[:10] if cid is not None else "-"


def _rows(report: udr.AuditReport) -> tuple[list[list[str]], list[list[str]]]:
    commits = [[c.id[:10], c.time.isoformat(), c.author, c.message,
                ", ".join(f"{k}={v}" for k, v in sorted(c.metadata.items())), _counts(c.tables)]
               for c in report.commits]
    moves = [[m.time.isoformat(), f"{m.kind} {m.name}", m.action, _short(m.old), _short(m.new), m.author, m.message]
             for m in report.ref_moves]
    return commits, moves


_COMMIT_HEAD = ["commit", "time", "author", "message", "metadata", "changes (+ins ~upd -del)"]
_MOVE_HEAD = ["time", "ref", "action", "from", "to", "who", "why"]


def _window(report: udr.AuditReport) -> str:
    text = f"from {report.since or 'the first commit'} to {report.until or 'now'}"
    return text + (f", table {report.table}" if report.table else "")


def markdown(report: udr.AuditReport) -> str:
    """The report as a Markdown document."""
    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        cell = [[value.replace("|", "\\|").replace("\n", " ") for value in row] for row in rows]
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in cell]

    commits, moves = _rows(report)
    lines = [f"# Audit report: {_window(report)}", "", f"## Commits ({len(commits)})", ""]
    lines += table(_COMMIT_HEAD, commits) if commits else ["(none)"]
    lines += ["", f"## Ref moves ({len(moves)})", ""]
    lines += table(_MOVE_HEAD, moves) if moves else ["(none)"]
    lines += ["", "## Verification", ""]
    lines += [f"- {problem}" for problem in report.verification.problems] or ["No problem found."]
    return "\n".join([*lines, "", f"**{report.verdict}**", ""])


def html_page(report: udr.AuditReport) -> str:
    """The report as a self-contained HTML page."""
    def table(head: list[str], rows: list[list[str]]) -> str:
        if not rows:
            return "<p>(none)</p>"
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
        return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"

    commits, moves = _rows(report)
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in report.verification.problems)
    title = html.escape(f"Audit report: {_window(report)}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><h2>Commits ({len(commits)})</h2>{table(_COMMIT_HEAD, commits)}"
            f"<h2>Ref moves ({len(moves)})</h2>{table(_MOVE_HEAD, moves)}"
            f"<h2>Verification</h2>{f'<ul>{problems}</ul>' if problems else '<p>No problem found.</p>'}"
            f"<p id=\"verdict\"><strong>{html.escape(report.verdict)}</strong></p></body></html>\n")


def render(report: udr.AuditReport, fmt: str) -> str:
    """The report in format `fmt` (one of `FORMATS`)."""
    if fmt == "json":
        return json.dumps(report_doc(report), indent=2, ensure_ascii=False) + "\n"
    return html_page(report) if fmt == "html" else markdown(report)
