"""The log layer: the content-addressed transaction log (LMDB) and chunk store (files).

Everything else in UDR is derived from what this layer stores. Write order, stated once:
(1) data chunks go to a temp file, are fsynced, renamed and their directory fsynced;
(2) one LMDB write transaction stores small blobs, appends the commit record and moves the branch head
    by compare-and-swap: this is the commit point;
(3) only then are caches and subscribers told, and correctness never depends on them.
"""
