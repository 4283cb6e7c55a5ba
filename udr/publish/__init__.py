"""Publishing: UDR tables made readable by other engines in place (Apache Iceberg), above `materialize`."""
