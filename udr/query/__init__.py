"""The query layer: serves table snapshots to DuckDB as views over the chunk files (not copies)."""
