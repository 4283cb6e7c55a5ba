"""The `udr` commands, one module per theme; `udr.cli` imports a module when one of its commands runs."""
