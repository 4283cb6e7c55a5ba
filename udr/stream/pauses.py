"""Keeping Python's full garbage collections short in a process that follows a change stream.

A full (generation 2) collection scans every tracked object. In a subscriber process most of them are what
importing pyarrow, DuckDB and UDR made, and they live as long as the process: on the 2-core test VMs one
full collection of those ~100,000 objects took 58 ms, and the ~70 commits made meanwhile were all delivered
more than 5 ms late (W7's p99 was 23-33 ms for that alone). `gc.freeze()` moves the objects alive at that
moment to a generation no collection scans, so later full collections cost what the process allocated
since.

The price: an object alive at the freeze that later becomes garbage *in a reference cycle* is not freed
until `gc.unfreeze()` (objects without cycles are freed by reference counting as usual). Collecting first
leaves only live objects to freeze, and freezing once per process bounds that to the heap of the moment
the first subscription started.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_long_lived_objects() -> None:
    """Collect, then exempt every surviving object from later collections; once per process."""
    global _frozen  # noqa: PLW0603 - gc.freeze() is per process, and so is the flag that it ran
    with _lock:
        if _frozen:
            return
        _frozen = True
        gc.collect()
        gc.freeze()
