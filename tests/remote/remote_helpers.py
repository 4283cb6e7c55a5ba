"""Helpers of the remote-lake tests: the S3 server's description, a look at the bucket's keys, and a proxy that
cuts the network at a commit point."""

from __future__ import annotations

import contextlib
import socket
import threading
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


class CuttingProxy:
    """A TCP proxy in front of the S3 server that, while `cut` is set, drops every connection carrying a PUT of
    a remote log entry before it reaches the server: a network failure at a commit point."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.cut = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        try:
            while data := src.recv(65536):
                if inspect and self.cut.is_set() and b"PUT /" in data and b"/log/" in data.split(b"\r\n", 1)[0]:
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
