"""Helpers of the remote-lake tests: the S3 server's description and a look at the bucket's keys."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

BUCKET = "udr-test"


@dataclass(frozen=True)
class S3:
    """The running server: its endpoint, and the environment variables that reach it."""

    endpoint: str
    env: dict[str, str]


def bucket_keys(s3: S3, url: str) -> list[str]:
    """Every object key under the lake at `url` (for checks only)."""
    prefix = url.split("/", 3)[3] + "/"
    client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"][len(prefix):] for page in pages for obj in page.get("Contents", []))
