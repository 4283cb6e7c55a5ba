"""A lake in object storage: chunks and a linear log of entries in a bucket, replayed into a local cache.

`store` is the only home of obstore; `log` is the remote log protocol; `replay` moves entries between the
remote log and a cache's LMDB log; `mirror` keeps a cache directory a replica and publishes its commits.
See docs/remote.md.
"""
