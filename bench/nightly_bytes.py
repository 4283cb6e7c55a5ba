"""N2's breakdown: what each night of the flagship nightly refresh adds to the lake directory, by kind.

    python bench/nightly_bytes.py [--parcels N] [--nights K]

UDR only (no naive side). After the first load and after each night it prints the bytes the night's commits
reference, by kind and by table group (the 77 compounds, master): Parquet chunk files, inline rows, deletion
vectors and before-images stored as log blobs, commit records; then how much `log/data.mdb` (LMDB, counted
by its file size as `dir_bytes` does) and `cache/` grew, and the LMDB overhead (pages beyond the blob and
record bytes: overflow pages rounded up to 4 KiB, half-full leaves, pages freed but not yet reused).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from bench_nightly import run_nights
from common import dir_bytes, remove, report, scratch

import udr
from udr.log.commits import encode_commit
from udr.log.format import BlobId, CommitId

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "nightly_refresh"))
from lotitude import PARCELS, Lotitude
from nightly import refresh


def referenced(db: udr.Lake, seen: set[CommitId]) -> Counter[str]:
    """Bytes the commits not in `seen` reference, by kind (and adds them to `seen`)."""
    log = db._handle.ctx.log
    out: Counter[str] = Counter()
    for _, cid in log.commits_from(0):
        if cid in seen:
            continue
        seen.add(cid)
        record = log.get_commit(cid)
        out["log: commit records"] += len(encode_commit(record))
        for name, op in record.tables.items():
            group = "master" if name == "master" else "compounds"
            for frag in op.add:
                if frag.inline:
                    out[f"log: {group} inline rows"] += log.blob_size(BlobId(frag.chunk))
                else:
                    path = log.chunks.path(frag.chunk)
                    out[f"chunks: {group} rows"] += path.stat().st_size if path.exists() else 0
            out[f"log: {group} vectors"] += sum(log.blob_size(d.vector) for d in op.deletes if d.vector)
            if op.before is not None:
                out[f"log: {group} before-images"] += log.blob_size(op.before)
    return out


def files(lake: Path) -> Counter[str]:
    """Bytes of the lake's LMDB log file and of its cache directory, as `dir_bytes` counts them."""
    out: Counter[str] = Counter()
    out["log/data.mdb"] = dir_bytes(lake / "log") - sum(
        dir_bytes(p) for p in (lake / "log").iterdir() if p.name != "data.mdb")
    out["cache/"] = dir_bytes(lake / "cache")
    return out


def show(label: str, total: int, kinds: Counter[str], grown: Counter[str]) -> None:
    """One night's lines: the total, each kind in MB, the files' growth and the LMDB overhead."""
    logged = sum(v for k, v in kinds.items() if k.startswith("log: "))
    parts = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in sorted(kinds.items()) if v)
    print(f"{label}: lake {total / 1e6:.2f} MB; {parts}; log/data.mdb +{grown['log/data.mdb'] / 1e6:.3f} "
          f"(LMDB overhead {(grown['log/data.mdb'] - logged) / 1e6:.3f}), cache/ +{grown['cache/'] / 1e6:.3f}",
          flush=True)


def main(parcels: int = PARCELS, nights: int = 10) -> None:
    lake = Lotitude(parcels)
    path = scratch("nightbytes")
    seen: set[CommitId] = set()
    with udr.open(path / "lake") as db:
        refresh(db, lake.tables(), label="first load")
        first = dir_bytes(path / "lake")
        before = files(path / "lake")
        show("first load", first, referenced(db, seen), before)
        for night in range(1, nights + 1):
            refresh(db, lake.night(), label=f"night {night}")
            now = files(path / "lake")
            show(f"night {night:2}", dir_bytes(path / "lake"), referenced(db, seen), now - before)
            before = now
        after = dir_bytes(path / "lake")
    report("N2", f"UDR bytes after {nights} nights / first load", after / 1e6, "MB", baseline=first / 1e6,
           baseline_name="first load", target="<= 1.3x", ok=after <= 1.3 * first)
    remove(path)


if __name__ == "__main__":
    run_nights(main, "N2 breakdown: bytes each night adds, by kind")
