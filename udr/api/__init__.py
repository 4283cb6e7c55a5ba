"""The facade: `udr.open`, `Lake`, `Transaction`, history, branches and maintenance over the four layers.

Its modules depend on `udr.api.context` (the lower layers' public objects) and on the layers' public APIs;
`udr/__init__.py` re-exports what users need.
"""
