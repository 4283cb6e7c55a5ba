"""A real S3 API on 127.0.0.1 for the remote-lake tests: one moto server per session, one bucket, a fresh
prefix (a fresh lake) per test. No external network: the endpoint and credentials are set in the environment
(inherited by worker processes), so `udr.open("s3://...")` finds them the way a user's machine would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from remote_helpers import BUCKET, S3


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield S3(endpoint, env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def url(s3_server: S3) -> str:
    """The URL of a new, empty lake in the test bucket."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def caches(tmp_path: Path) -> Iterator[Path]:
    """A directory for local caches (one sub-directory per simulated machine)."""
    yield tmp_path / "caches"
