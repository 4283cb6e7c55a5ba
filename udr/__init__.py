"""UDR, the Unified Data Runtime: versioned tables with cross-table ACID transactions, time travel,
branches, content-addressed storage and change streams in one local directory, queried with DuckDB.

    import udr
    with udr.open("lake") as db:
        with db.transaction(message="nightly refresh") as tx:
            tx.append("orders", orders)
            tx.overwrite("scores", scores)
        db.sql("SELECT count(*) FROM orders").fetchall()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from udr.errors import AckError as AckError
from udr.errors import Conflict as Conflict
from udr.errors import ConflictError as ConflictError
from udr.errors import CorruptionError as CorruptionError
from udr.errors import Expired as Expired
from udr.errors import FormatError as FormatError
from udr.errors import GroupBusy as GroupBusy
from udr.errors import InvalidName as InvalidName
from udr.errors import KeyViolation as KeyViolation
from udr.errors import LakeNotFound as LakeNotFound
from udr.errors import MergeConflict as MergeConflict
from udr.errors import RefNotFound as RefNotFound
from udr.errors import SchemaError as SchemaError
from udr.errors import SqlError as SqlError
from udr.errors import StorageError as StorageError
from udr.errors import TableNotFound as TableNotFound
from udr.errors import UdrError as UdrError
from udr.errors import UsageError as UsageError

if TYPE_CHECKING:
    from udr.api.inputs import TableData as TableData
    from udr.api.lake import Lake as Lake
    from udr.api.lake import open as open
    from udr.api.remotes import clone as clone
    from udr.api.remotes import pull as pull
    from udr.api.remotes import push as push
    from udr.api.sources import SourceVersion as SourceVersion
    from udr.api.sources import read_source as read_source
    from udr.api.sources import source_kind as source_kind
    from udr.api.sources import source_versions as source_versions
    from udr.api.transaction import Transaction as Transaction
    from udr.publish.iceberg import PublishReport as PublishReport
    from udr.stream.subscription import Subscription as Subscription
    from udr.values import AuditReport as AuditReport
    from udr.values import ChangeBatch as ChangeBatch
    from udr.values import Commit as Commit
    from udr.values import ExpireReport as ExpireReport
    from udr.values import GroupInfo as GroupInfo
    from udr.values import Hold as Hold
    from udr.values import LakeStats as LakeStats
    from udr.values import MemberInfo as MemberInfo
    from udr.values import PartitionInfo as PartitionInfo
    from udr.values import RefMove as RefMove
    from udr.values import RetentionPolicy as RetentionPolicy
    from udr.values import TableChange as TableChange
    from udr.values import VerifyReport as VerifyReport

__version__ = "0.1.0"

# The rest of the public API, imported on first use: `import udr` (and so `udr --version`) stays cheap,
# while `udr.open` pulls in pyarrow, DuckDB and LMDB.
_LAZY = {
    "AuditReport": "udr.values",
    "ChangeBatch": "udr.values",
    "Commit": "udr.values",
    "ExpireReport": "udr.values",
    "GroupInfo": "udr.values",
    "Hold": "udr.values",
    "Lake": "udr.api.lake",
    "LakeStats": "udr.values",
    "MemberInfo": "udr.values",
    "PartitionInfo": "udr.values",
    "PublishReport": "udr.publish.iceberg",
    "RefMove": "udr.values",
    "RetentionPolicy": "udr.values",
    "SourceVersion": "udr.api.sources",
    "Subscription": "udr.stream.subscription",
    "TableChange": "udr.values",
    "TableData": "udr.api.inputs",
    "Transaction": "udr.api.transaction",
    "VerifyReport": "udr.values",
    "clone": "udr.api.remotes",
    "open": "udr.api.lake",
    "pull": "udr.api.remotes",
    "push": "udr.api.remotes",
    "read_source": "udr.api.sources",
    "source_kind": "udr.api.sources",
    "source_versions": "udr.api.sources",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'udr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AckError",
    "AuditReport",
    "ChangeBatch",
    "Commit",
    "Conflict",
    "ConflictError",
    "CorruptionError",
    "ExpireReport",
    "Expired",
    "FormatError",
    "GroupBusy",
    "GroupInfo",
    "Hold",
    "InvalidName",
    "KeyViolation",
    "Lake",
    "LakeNotFound",
    "LakeStats",
    "MemberInfo",
    "MergeConflict",
    "PartitionInfo",
    "PublishReport",
    "RefMove",
    "RefNotFound",
    "RetentionPolicy",
    "SchemaError",
    "SourceVersion",
    "SqlError",
    "StorageError",
    "Subscription",
    "TableChange",
    "TableData",
    "TableNotFound",
    "Transaction",
    "UdrError",
    "UsageError",
    "VerifyReport",
    "clone",
    "open",
    "pull",
    "push",
    "read_source",
    "source_kind",
    "source_versions",
]
