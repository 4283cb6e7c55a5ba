"""O1-O3: a lake in object storage against the same S3 server written to directly with the same library.

The S3 server is moto's (`moto_server`, a separate process on 127.0.0.1, objects in memory), so figures
measure UDR's protocol and client overhead, not a cloud network. Baselines, measured in the same run and
interleaved with UDR:
- O1 (W1 ingest of TPC-H SF1 lineitem): encode the in-memory table as one Parquet file (snappy, UDR's row
  groups) and `obstore.put` it to the server. UDR: `udr.open("s3://...").append(...)` (chunks written to the
  cache, uploaded, then the log entry created).
- O2 (warm only): TPC-H Q1/Q6 on the remote lake's warm cache vs DuckDB `read_parquet` of the original file.
  The cold comparison needs DuckDB's httpfs extension, which this machine cannot download.
- O3: small commits (10 rows each) on a remote lake vs the server's rate of single conditional puts
  (`obstore.put(mode="create")` of 1 KiB objects).
- S1: a subscriber on its own cache polling the remote log; delivery latency of commits made through another.
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

import anyio
import boto3
import duckdb
import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from bench_ingest import LINEITEM, Q1, Q6
from common import remove, report, scratch
from obstore.store import from_url

import udr

BUCKET = "udr-bench"
SMALL_COMMITS = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
        except OSError:
            time.sleep(0.05)
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    return proc, endpoint


def _url() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


def o1_ingest(table: pa.Table, repeat: int = 3) -> None:
    floor, ours, upload = [], [], []
    data = LINEITEM.read_bytes()
    for _ in range(repeat):
        store = from_url(_url(), client_options={"allow_http": "true"})
        start = time.perf_counter()
        obstore.put(store, "tpchgen.parquet", data)
        upload.append(time.perf_counter() - start)
        start = time.perf_counter()
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy", row_group_size=122_880)
        obstore.put(store, "lineitem.parquet", sink.getvalue())
        floor.append(time.perf_counter() - start)
        del sink
        cache = scratch("remote-o1")
        start = time.perf_counter()
        with udr.open(_url(), cache=cache) as db:
            db.append("lineitem", table)
        ours.append(time.perf_counter() - start)
        remove(cache)
    f, o, u = statistics.median(floor), statistics.median(ours), statistics.median(upload)
    print(f"     O1 times: encode+put {sorted(floor)}, put of file bytes {sorted(upload)}, udr {sorted(ours)}")
    report("O1", "W1 ingest into a remote lake", o, "s", baseline=f,
           baseline_name="encode the table as Parquet + obstore put", target="<= 1.2x", ok=o <= 1.2 * f)
    report("O1", "W1 ingest into a remote lake", o, "s", baseline=u,
           baseline_name="obstore put of the tpchgen file's bytes (no encoding)", target="printed")


def o2_cold(url: str) -> None:
    """First query through a new cache (log replayed, chunks fetched on first read) vs fetching the tpchgen
    file with obstore and querying it with DuckDB (DuckDB's own S3 reader, httpfs, is not installable here)."""
    store = from_url(url, client_options={"allow_http": "true"})
    obstore.put(store, "tpchgen.parquet", LINEITEM.read_bytes())
    for name, query in (("Q1", Q1), ("Q6", Q6)):
        ours, floor = [], []
        for _ in range(3):
            cache = scratch("remote-o2c")
            start = time.perf_counter()
            with udr.open(url, cache=cache) as db:
                db.query(query)
            ours.append(time.perf_counter() - start)
            remove(cache)
            local = scratch("remote-o2f")
            start = time.perf_counter()
            (local / "l.parquet").write_bytes(bytes(obstore.get(store, "tpchgen.parquet").bytes()))
            local_query = query.replace("FROM lineitem", f"FROM read_parquet('{local / 'l.parquet'}')")
            duckdb.connect().sql(local_query).fetchall()
            floor.append(time.perf_counter() - start)
            remove(local)
        o, f = statistics.median(ours), statistics.median(floor)
        report("O2", f"{name} on a remote lake, cold cache", o, "s", baseline=f,
               baseline_name="obstore get of the file + duckdb read_parquet", target="<= 1.2x", ok=o <= 1.2 * f)


def o2_warm(table: pa.Table) -> None:
    cache = scratch("remote-o2")
    url = _url()
    with udr.open(url, cache=cache) as db:
        db.append("lineitem", table)
    o2_cold(url)
    with udr.open(url, cache=cache) as db:
        for name, query in (("Q1", Q1), ("Q6", Q6)):
            db.query(query)
            ours = statistics.median(_timed(lambda q=query: db.query(q)) for _ in range(5))
            con = duckdb.connect()
            floor_sql = query.replace("FROM lineitem", f"FROM read_parquet('{LINEITEM}')")
            con.sql(floor_sql).fetchall()
            floor = statistics.median(_timed(lambda s=floor_sql, c=con: c.sql(s).fetchall()) for _ in range(5))
            report("O2", f"{name} on a remote lake, warm cache", ours, "s", baseline=floor,
                   baseline_name="duckdb read_parquet (local file)", target="<= 1.0x", ok=ours <= floor)
    remove(cache)


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def o3_small_commits() -> None:
    store = from_url(_url(), client_options={"allow_http": "true"})
    payload = b"x" * 1024
    start = time.perf_counter()
    for n in range(SMALL_COMMITS):
        obstore.put(store, f"log/{n:020d}", payload, mode="create")
    puts = SMALL_COMMITS / (time.perf_counter() - start)
    cache = scratch("remote-o3")
    rows = pa.table({"k": pa.array(range(10), pa.int64()), "v": pa.array(range(10), pa.float64())})
    with udr.open(_url(), cache=cache) as db:
        db.create_table("t", rows.schema)
        start = time.perf_counter()
        for _ in range(SMALL_COMMITS):
            db.append("t", rows)
        commits = SMALL_COMMITS / (time.perf_counter() - start)
    remove(cache)
    report("O3", "small commits on a remote lake", commits, "tx/s", baseline=puts,
           baseline_name="conditional puts", target=">= 0.5x", ok=commits >= 0.5 * puts)


def delivery_latency(commits: int = 20) -> None:
    """A subscriber on its own cache (polling the remote log) receiving commits made through another cache,
    one every 0.25 s: latency from the writer's commit returning to the batch arriving."""
    url, cache_w, cache_r = _url(), scratch("remote-sw"), scratch("remote-sr")
    rows = pa.table({"k": pa.array(range(10), pa.int64())})
    with udr.open(url, cache=cache_w) as db:
        db.create_table("t", rows.schema)
    sent: dict[str, float] = {}
    got: list[float] = []

    def write() -> None:
        with udr.open(url, cache=cache_w) as w:
            for _ in range(commits):
                time.sleep(0.25)
                cid = w.append("t", rows).id
                sent[cid] = time.perf_counter()

    async def follow() -> None:
        with udr.open(url, cache=cache_r) as reader:
            async with reader.subscribe("t", start="latest") as sub, anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, write)
                async for batch in sub:
                    arrived = time.perf_counter()
                    await anyio.sleep(0.01)  # the writer's thread records its send time after `append` returns
                    got.append(arrived - sent[batch.commit.id])
                    if len(got) == commits:
                        break

    anyio.run(follow)
    remove(cache_w)
    remove(cache_r)
    got.sort()
    report("S1", "remote subscription delivery p50", got[len(got) // 2] * 1000, "ms", target="<= 1000 ms",
           ok=got[len(got) // 2] <= 1.0)
    report("S1", "remote subscription delivery max", got[-1] * 1000, "ms", target="printed")


def main() -> None:
    proc, endpoint = start_server()
    try:
        print(f"moto S3 server at {endpoint}; udr {udr.__version__}, obstore {obstore.__version__}", flush=True)
        o3_small_commits()
        delivery_latency()
        table = pq.read_table(LINEITEM)
        o1_ingest(table)
        o2_warm(table)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
