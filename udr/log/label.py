"""The lake's label: the `FORMAT` file that says a directory holds a lake, and of which format version.

Read before any lock is taken or any byte written, so a lake of a newer format is left untouched. Written
last at creation, and again when a lake is relabelled to a newer version, by temp file, fsync, rename and
directory fsync: a crash leaves either the old label or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from udr.errors import FormatError
from udr.log.format import (
    CACHE_DIR,
    CHUNK_DIR,
    FORMAT_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOG_DIR,
    READABLE_VERSIONS,
    TMP_DIR,
)
from udr.log.processes import process_alive

_LAYOUT = re.compile(rf"^({LOG_DIR}|{CACHE_DIR}|{CHUNK_DIR}|{TMP_DIR}|{FORMAT_FILE}\.\d+\.tmp)$")


def read_format(root: Path) -> int | None:
    """Return the lake format version stored at `root`, None if `root` holds no lake.

    Raises:
        FormatError: `root` is a file, has a damaged FORMAT file, or is a lake of a newer format.
    """
    if root.exists() and not root.is_dir():
        raise FormatError(f"{root} is a file, not a UDR lake directory")
    marker = root / FORMAT_FILE
    if not marker.exists():
        # Only UDR's own entries and no FORMAT file: a creation that crashed or is under way elsewhere (whose
        # FORMAT file may appear while this looks: then it is read below).
        names = {p.name for p in root.iterdir()} if root.exists() else set()
        if FORMAT_FILE not in names:
            if any(not _LAYOUT.match(name) for name in names):
                raise FormatError(f"{root} is not empty and is not a UDR lake (no {FORMAT_FILE} file)")
            return None
    try:
        doc = json.loads(marker.read_text())
        name, version = doc["format"], int(doc["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{marker} is damaged: {exc}") from exc
    if name != FORMAT_NAME:
        raise FormatError(f"{root} is not a UDR lake (format {name!r})")
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"lake {root} uses format version {version}; this udr reads version "
            f"{max(READABLE_VERSIONS)} and older: upgrade udr"
        )
    return version


def write_label(root: Path, version: int = FORMAT_VERSION) -> None:
    """Label the lake at `root` with format `version` (default: the current one), atomically and durably."""
    # A per-process temp name: processes creating one lake at once must not rename each other's file.
    tmp = root / f"{FORMAT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT_NAME, "version": version}) + "\n")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, root / FORMAT_FILE)
    # The rename is durable only once the directory is: a crash must not bring the old label back.
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_labels(root: Path) -> None:
    """Remove temp label files left by processes that crashed while labelling the lake at `root`."""
    for stale in root.glob(f"{FORMAT_FILE}.*.tmp"):
        if not process_alive(int(stale.name.split(".")[1])):
            stale.unlink(missing_ok=True)
