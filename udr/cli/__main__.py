"""`python -m udr.cli`: the `udr` console script."""

from __future__ import annotations

from udr.cli import main

main()
