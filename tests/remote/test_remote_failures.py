"""Storage failures on a lake in object storage: refused or missing credentials and denied writes raise
`udr.StorageError(retryable=False)` and change nothing; a network failure at the commit point raises
`StorageError(retryable=True)`, leaves nothing visible, and the retried write commits.

Access control runs on a second moto server, started in its own process with IAM enforced
(`INITIAL_NO_AUTH_ACTION_COUNT`: the first requests, which set up the bucket and users, go unchecked).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from remote_helpers import S3, CuttingProxy, bucket_keys

import udr

_SETUP_REQUESTS = 7  # the bucket, two users, their keys and policies


@dataclass(frozen=True)
class AuthServer:
    endpoint: str
    writer: dict[str, str]
    reader: dict[str, str]


def _options(endpoint: str, key: dict[str, str] | None = None) -> dict[str, str]:
    opts = {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1"}
    if key is not None:
        opts |= {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    return opts


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the moto server did not start"
                time.sleep(0.1)
        setup = {"endpoint_url": endpoint, "aws_access_key_id": "x", "aws_secret_access_key": "x",
                 "region_name": "us-east-1"}
        boto3.client("s3", **setup).create_bucket(Bucket="auth-bucket")
        iam = boto3.client("iam", **setup)
        keys = {}
        for user, actions in (("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])):
            iam.create_user(UserName=user)
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        yield AuthServer(endpoint, keys["writer"], keys["reader"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_denied_write_raises_a_final_storage_error_and_changes_nothing(auth_server: AuthServer,
                                                                         caches: Path) -> None:
    url = "s3://auth-bucket/denied"
    with udr.open(url, cache=caches / "w", storage_options=_options(auth_server.endpoint, auth_server.writer)) as w:
        w.append("t", {"x": [1, 2]})
        with udr.open(url, cache=caches / "r",
                      storage_options=_options(auth_server.endpoint, auth_server.reader)) as r:
            assert r.row_count("t") == 2  # reading is allowed
            with pytest.raises(udr.StorageError, match="access denied") as failed:
                r.append("t", {"x": [3]})
            assert failed.value.retryable is False
            assert r.row_count("t") == 2 and len(r.log(limit=None)) == 2
        assert w.refresh() == 0 and w.row_count("t") == 2


def test_refused_or_missing_credentials_raise_a_final_storage_error(auth_server: AuthServer, caches: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    refused = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "wrong"}
    with pytest.raises(udr.StorageError, match="refused the credentials") as failed:
        udr.open("s3://auth-bucket/refused", cache=caches / "a",
                 storage_options=_options(auth_server.endpoint, refused))
    assert failed.value.retryable is False
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(udr.StorageError, match="no valid credentials") as failed:
        udr.open("s3://auth-bucket/none", cache=caches / "b", storage_options=_options(auth_server.endpoint))
    assert failed.value.retryable is False
    assert not (caches / "a").exists() and not (caches / "b").exists()


def test_a_network_failure_at_the_commit_point_is_retryable_and_leaves_nothing(url: str, caches: Path,
                                                                               s3_server: S3) -> None:
    proxy = CuttingProxy(s3_server.endpoint)
    try:
        with udr.open(url, cache=caches / "a", storage_options={"endpoint": proxy.endpoint}) as a:
            a.append("t", {"x": [1]})
            entries = [k for k in bucket_keys(s3_server, url) if k.startswith("log/")]
            proxy.cut.set()  # chunk uploads pass; the log entry put never reaches the server
            with pytest.raises(udr.StorageError) as failed:
                a.append("t", {"x": list(range(20_000))})
            assert failed.value.retryable is True and proxy.dropped >= 1
            assert a.row_count("t") == 1
            assert [k for k in bucket_keys(s3_server, url) if k.startswith("log/")] == entries
            with udr.open(url, cache=caches / "b", create=False) as b:
                assert b.row_count("t") == 1
                proxy.cut.clear()
                a.append("t", {"x": list(range(20_000))})  # the retry commits
                assert b.refresh() == 1 and b.row_count("t") == 20_001
    finally:
        proxy.close()
