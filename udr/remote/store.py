"""Object storage for a remote lake: the one module that talks to obstore.

`ObjectStore` is the seam the remote log and the chunk mirror use: whole-object get, unconditional put (for
content-addressed chunks, where a repeated put writes the same bytes), create-if-absent put (the commit point
of the remote log), compare-and-swap on an ETag (an erasure purging a log entry), list and delete (gc only).
`open_store` builds the real one from a URL (`s3://`, `gs://`, `az://`); obstore's stores are safe across threads.

Every obstore failure is translated here into `udr.StorageError` (with `retryable` set for timeouts, dropped
connections and server errors), or `LakeNotFound` for a missing bucket, so no layer above sees obstore.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol, cast

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import MemoryStore, from_url

from udr.errors import LakeNotFound, StorageError, UsageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config
    from obstore.store import ObjectStore as _Backend

SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss")
# "s3://bucket/x", "file:///tmp/x", "https://...": a scheme, then "://".
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# An HTTP 403 in an error's text (not any "403" in it: keys and bucket prefixes hold random digits).
_FORBIDDEN = re.compile(r"\b403 Forbidden\b|\bstatus(?: code)?:? 403\b", re.IGNORECASE)

# Options obstore takes as HTTP client options rather than store configuration.
_CLIENT_OPTIONS = frozenset({"allow_http", "allow_invalid_certificates", "connect_timeout", "timeout", "proxy_url",
                             "pool_idle_timeout", "http2_only", "user_agent"})
# A commit waits on these: fail within seconds rather than obstore's default of minutes of retries.
_DEFAULT_CLIENT = {"connect_timeout": "5s", "timeout": "60s"}
_RETRIES = 3
_RETRY_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: its key relative to the lake's prefix, size and last modification."""

    key: str
    size: int
    modified: datetime


class ObjectStore(Protocol):
    """Whole objects under one lake prefix."""

    @property
    def url(self) -> str:
        """The lake's URL (without credentials)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Write the object, replacing any old one."""
        ...

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the object only if absent, atomically; False if it already existed (nothing written)."""
        ...

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (its version, for `replace`), or None if there is no such object."""
        ...

    def replace(self, key: str, data: bytes, etag: str) -> bool:
        """Overwrite the object only if its ETag is still `etag`, atomically; False if it changed (or is gone)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, None if there is no such object."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (for gc only: a listing is not a snapshot)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (no error if it is gone)."""
        ...


def is_url(text: str) -> bool:
    """Whether `text` is a URL (any scheme) rather than a path: a lake or destination in object storage."""
    return _URL.match(text) is not None


def open_store(url: str, options: Mapping[str, str] | None = None) -> ObjectStore:
    """The object store holding the lake at `url`.

    Credentials, region and endpoint come from the usual environment variables (`AWS_ACCESS_KEY_ID`,
    `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) unless `options` names them
    (obstore's keys: "access_key_id", "endpoint", "region", "allow_http", ...).

    Raises:
        UsageError: an unsupported scheme or an unknown option.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise UsageError(f"cannot open {url!r}: udr reads lakes from {', '.join(s + '://' for s in SCHEMES)} "
                         "or a local directory")
    given = dict(options or {})
    client: dict[str, str] = {**_DEFAULT_CLIENT, **{k: str(v) for k, v in given.items() if k in _CLIENT_OPTIONS}}
    config = {k: v for k, v in given.items() if k not in _CLIENT_OPTIONS}
    if scheme == "s3" and "allow_http" not in client and os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true":
        client["allow_http"] = "true"
    try:
        # Typed as S3's options for mypy only: obstore checks the keys of every scheme's own at run time.
        store = from_url(url, config=cast("S3Config", config) if config else None,
                         client_options=cast("ClientConfig", client),
                         retry_config=cast("RetryConfig", {"max_retries": _RETRIES, "retry_timeout": _RETRY_TIMEOUT}))
    except BaseError as exc:
        raise UsageError(f"cannot open {url!r}: {_first_line(exc)}; check the URL and storage_options") from exc
    return _Obstore(url.rstrip("/"), store)


class _Obstore:
    """`ObjectStore` over one obstore store."""

    def __init__(self, url: str, store: _Backend) -> None:
        self._url = url
        self._store = store

    @property
    def url(self) -> str:
        return self._url

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            return None
        except BaseError as exc:
            raise self._failed("read", key, exc) from exc

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        try:
            found = obstore.get(self._store, key)
            return bytes(found.bytes()), str(found.meta["e_tag"])
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            return None
        except BaseError as exc:
            raise self._failed("read", key, exc) from exc

    def replace(self, key: str, data: bytes, etag: str) -> bool:
        try:
            obstore.put(self._store, key, data, mode={"e_tag": etag})
        except (PreconditionError, NotFoundError, FileNotFoundError):
            return False
        except BaseError as exc:
            raise self._failed("write", key, exc) from exc
        return True

    def put(self, key: str, data: bytes) -> None:
        try:
            obstore.put(self._store, key, data, mode="overwrite")
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            raise self._failed("write", key, exc) from exc
        except BaseError as exc:
            raise self._failed("write", key, exc) from exc

    def put_new(self, key: str, data: bytes) -> bool:
        try:
            obstore.put(self._store, key, data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            raise self._failed("write", key, exc) from exc
        except BaseError as exc:
            raise self._failed("write", key, exc) from exc
        return True

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            return int(obstore.head(self._store, key)["size"])
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            return None
        except BaseError as exc:
            raise self._failed("read", key, exc) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for page in obstore.list(self._store, prefix):
                for meta in page:
                    modified = meta["last_modified"]
                    yield ObjectInfo(meta["path"], int(meta["size"]), modified.astimezone(timezone.utc))
        except FileNotFoundError as exc:
            self._check_bucket(exc)
        except BaseError as exc:
            raise self._failed("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self._store, key)
        except FileNotFoundError:
            return
        except BaseError as exc:
            raise self._failed("delete", key, exc) from exc

    def _check_bucket(self, exc: FileNotFoundError) -> None:
        if "NoSuchBucket" in str(exc):
            raise LakeNotFound(f"the bucket of {self._url} does not exist; create it first, or check the URL "
                               "and endpoint") from exc

    def _failed(self, what: str, key: str, exc: BaseException) -> StorageError:
        where = f"{self._url}/{key}"
        text = str(exc)
        if isinstance(exc, UnauthenticatedError) or "/latest/api/token" in text or "credential" in text.lower():
            return StorageError(f"cannot {what} {where}: no valid credentials; set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY (or the store's own variables) or pass storage_options")
        if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
            return StorageError(f"cannot {what} {where}: the store refused the credentials (unknown access key or "
                                "wrong secret); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or storage_options")
        if isinstance(exc, PermissionDeniedError) or "AccessDenied" in text or _FORBIDDEN.search(text):
            return StorageError(f"cannot {what} {where}: access denied; check the credentials' permissions "
                                "on this bucket and prefix")
        if isinstance(exc, NotFoundError):
            return StorageError(f"cannot {what} {where}: not found")
        return StorageError(f"cannot {what} {where}: {_first_line(exc)}; check the network and the endpoint, "
                            "then retry", retryable=True)


def memory_store(url: str = "memory://udr") -> ObjectStore:
    """An `ObjectStore` held in this process's memory (the in-memory twin of `open_store`, for tests)."""
    return _Obstore(url, MemoryStore())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
