#!/usr/bin/env python3
"""Hub benchmarks against DuckDB, measured in the same run on the same files.

Usage: python3 bench/hub.py [--scale S]   (needs `pip install duckdb` and a release build:
`cargo build --release -p citybrain`). Prints a Markdown table for docs/benchmarks.md.

1. NDJSON ingest over HTTP on loopback, batches of 10,000 records, each acknowledged after
   fsync (`citybrain ingest`), vs DuckDB `INSERT INTO t SELECT * FROM read_json(file)` into
   a persistent database file.
2. Parquet ingest of the same records (one request) vs DuckDB `INSERT ... read_parquet`.
3. SQL: COUNT(*) GROUP BY checkpoint_id and COUNT(DISTINCT plate), citybrain over its own
   segments + tail vs DuckDB over a Parquet file of the same records; answers asserted equal.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/citybrain-target"))
# CITYBRAIN_BIN runs another build (bench/old-vs-new compares two commits this way).
BIN = os.environ.get("CITYBRAIN_BIN") or os.path.join(TARGET, "release", "citybrain")


def run(*args, **kw):
    return subprocess.run([BIN, *args], check=True, capture_output=True, text=True, **kw)


def start(data):
    proc = subprocess.Popen([BIN, "up", "--no-demo", "--listen", "127.0.0.1:0", "--data", data,
                             "--body-limit-mib", "2048", "--seal-rows", "200000",
                             # one request carries the whole file, up to 51 M records
                             "--max-ingest-rows", "100000000", "--max-ingest-mib", "16384"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CITYBRAIN_LOG": "warn"})
    for line in proc.stdout:
        if line.startswith("citybrain is up on "):
            return proc, line.split()[4].rstrip("/")
    raise SystemExit("server did not start")


def publisher_env(data, base):
    """Sets up the transport department and a publisher token; returns the CLI environment."""
    admin = {**os.environ, "CITYBRAIN_SERVER": base, "CITYBRAIN_TOKEN_FILE": os.path.join(data, "admin.token")}
    token_file = os.path.join(data, "transport.token")
    run("departments", "create", "transport", env=admin)
    run("principals", "create", "bench", "--department", "transport", "--role", "publisher", env=admin)
    run("tokens", "issue", "bench", "--out", token_file, env=admin)
    return {**os.environ, "CITYBRAIN_SERVER": base, "CITYBRAIN_TOKEN_FILE": token_file}


def sql(base, token, query):
    req = urllib.request.Request(base + "/api/v1/sql", data=json.dumps({"sql": query, "purpose": "benchmark"}).encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    t = time.perf_counter()
    body = urllib.request.urlopen(req).read()
    return time.perf_counter() - t, json.loads(body)


def warm(path):
    """Reads a file once so both peers read it from the page cache, not the first from disk."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def settle(proc):
    """Waits until the server is idle: its live indices digest what was ingested on their own
    thread after the acknowledgements, and seals run in the background."""
    def cpu():
        fields = open("/proc/%d/stat" % proc.pid).read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    last = cpu()
    while True:
        time.sleep(1)
        now = cpu()
        if now - last <= 2:  # clock ticks (1/100 s) in that second
            return
        last = now


def best(f, n=3):
    return min(f() for _ in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=2.5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="citybrain-bench-")
    city = os.path.join(work, "city")
    run("gen", "--seed", "7", "--scale", str(args.scale), "--out", city)
    ndjson = os.path.join(city, "anpr_passages.ndjson")
    rows = sum(1 for _ in open(ndjson, "rb"))
    size_mb = os.path.getsize(ndjson) / 1e6
    definition = os.path.join(city, "definitions", "transport.anpr_passages.toml")
    results = []

    # 1. NDJSON over HTTP.
    data = os.path.join(work, "data")
    proc, base = start(data)
    env = publisher_env(data, base)
    run("datasets", "create", definition, env=env)
    warm(ndjson)
    # Each timed step starts with no dirty pages of an earlier one still being written back
    # (they would slow its fsyncs).
    os.sync()
    t = time.perf_counter()
    run("ingest", "transport.anpr_passages", ndjson, "--batch", "10000", env=env)
    cb_ndjson = time.perf_counter() - t

    db_path = os.path.join(work, "duck.db")
    con = duckdb.connect(db_path)
    con.execute("CREATE TABLE p (ts TIMESTAMPTZ, checkpoint_id BIGINT, plate VARCHAR, lane BIGINT, speed_kmh DOUBLE)")
    warm(ndjson)
    os.sync()
    t = time.perf_counter()
    con.execute(f"INSERT INTO p SELECT * FROM read_json('{ndjson}', columns={{ts:'TIMESTAMPTZ', checkpoint_id:'BIGINT', plate:'VARCHAR', lane:'BIGINT', speed_kmh:'DOUBLE'}})")
    con.execute("CHECKPOINT")
    duck_ndjson = time.perf_counter() - t
    results.append(("NDJSON ingest, %d records (%.0f MB)" % (rows, size_mb), rows / cb_ndjson, rows / duck_ndjson, "records/s"))
    # The first server's live indices digest those passages on their own thread (and its
    # seals are written): the next steps are timed once it is idle, not while it shares the
    # two cores.
    token = open(os.path.join(data, "transport.token")).read().strip()
    settle(proc)

    # 2. Parquet: the same records, written by DuckDB.
    parquet = os.path.join(work, "passages.parquet")
    con.execute(f"COPY p TO '{parquet}' (FORMAT parquet)")
    data2 = os.path.join(work, "data2")
    proc2, base2 = start(data2)
    env2 = publisher_env(data2, base2)
    run("datasets", "create", definition, env=env2)
    warm(parquet)
    os.sync()
    t = time.perf_counter()
    run("ingest", "transport.anpr_passages", parquet, env=env2)
    cb_parquet = time.perf_counter() - t
    proc2.terminate(); proc2.wait()
    con.execute("CREATE TABLE q AS SELECT * FROM p LIMIT 0")
    warm(parquet)
    os.sync()
    t = time.perf_counter()
    con.execute(f"INSERT INTO q SELECT * FROM read_parquet('{parquet}')")
    con.execute("CHECKPOINT")
    duck_parquet = time.perf_counter() - t
    results.append(("Parquet ingest, %d records" % rows, rows / cb_parquet, rows / duck_parquet, "records/s"))

    # 3. SQL over the same Parquet data.
    # As the owner department (raw data, audited like any call).

    # Both over every record: citybrain over its sealed segments and unsealed tail, DuckDB
    # over the Parquet file holding all of them (its sealed segments alone would be fewer
    # rows); the answers must agree.
    con.execute("SET preserve_insertion_order = false")
    for label, q_cb, q_duck in [
        ("COUNT(*) GROUP BY checkpoint", "SELECT checkpoint_id AS k, count(*) AS n FROM transport.anpr_passages GROUP BY 1",
         f"SELECT checkpoint_id, count(*) FROM read_parquet('{parquet}') GROUP BY 1"),
        ("COUNT(DISTINCT plate)", "SELECT count(DISTINCT plate) AS n FROM transport.anpr_passages",
         f"SELECT count(DISTINCT plate) FROM read_parquet('{parquet}')"),
    ]:
        ours = sorted(tuple(r.values()) for r in sql(base, token, q_cb)[1])
        theirs = sorted(tuple(r) for r in con.execute(q_duck).fetchall())
        assert ours == theirs, f"{label}: citybrain and DuckDB disagree"
        cb = best(lambda: sql(base, token, q_cb)[0])
        duck = best(lambda: (lambda t: (con.execute(q_duck).fetchall(), time.perf_counter() - t)[1])(time.perf_counter()))
        results.append((label + " (%d rows, answers agree)" % rows, cb, duck, "s, best of 3"))
    _, sealed = sql(base, token, "SELECT count(*) AS n FROM transport.anpr_passages")
    proc.terminate(); proc.wait()

    print("| benchmark | citybrain | DuckDB %s | unit |" % duckdb.__version__)
    print("|---|---|---|---|")
    for label, a, b, unit in results:
        fmt = "%.0f" if unit == "records/s" else "%.3f"
        print("| %s | %s | %s | %s |" % (label, fmt % a, fmt % b, unit))
    print("\nrows visible to citybrain SQL: %s; machine: %d cores" % (sealed[0]["n"], os.cpu_count()))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
