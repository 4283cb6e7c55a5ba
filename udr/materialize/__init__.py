"""The materialize layer: folds the log into table snapshots and reads and writes table rows.

Everything here is derived from the log and can be thrown away and rebuilt by replay.
"""
