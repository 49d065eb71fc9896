#!/usr/bin/env python3
"""The Postgres wire against the HTTP SQL endpoint, the same statement as the same principal
(issue 24's target: wire latency within 10% of HTTP's for a 100-row result; a 10,000-row
result streamed).

Usage: PY=~/.cache/citybrain-pg-clients/venv/bin/python
       $PY bench/pgwire.py BIN [--runs 300] [--out results.jsonl]
(the venv of scripts/install-pg-clients, for psycopg). Starts BIN with the demo city and
--pg-listen, then for each result size runs the statement RUNS times alternately over HTTP
(`POST /api/v1/sql`, a kept-alive connection, JSON) and over the wire (psycopg, one
connection, text results, the statement prepared once by the server as psycopg does after
five runs), one client at a time, after 20 warm-up runs each. Both answers are compared
(rows as text) before timing. Latency is the client's: send to last row decoded. For the
results of 10,000 rows or more it also reports when the first row reached the wire client
(psycopg's stream(), single-row mode: the row is handed over as it arrives), the same
over HTTP with `"stream": true` (whole read, and when its first bytes arrived), and the
server's peak resident memory for one read each way. The whole day's passages (no ORDER BY, no
LIMIT) are read --long-runs times.
"""
import argparse, http.client, json, os, shutil, statistics, subprocess, sys, tempfile, time

import psycopg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--long-runs", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="citybrain-pgwire-")
    proc = subprocess.Popen([args.bin, "up", "--listen", "127.0.0.1:0", "--demo-day", "2026-11-22", "--pg-listen", "127.0.0.1:0",
                             "--data", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "CITYBRAIN_LOG": "warn"})
    pg_port = None
    for line in proc.stdout:
        if line.startswith("citybrain is up on "):
            host, port = line.split()[4].rstrip("/").split("//")[1].split(":")
        if "Postgres wire:" in line:
            pg_port = int(line.split("@127.0.0.1:")[1].split("/")[0])
            break
    token = open(os.path.join(data, "cockpit.token")).read().strip()
    http_conn = http.client.HTTPConnection(host, int(port))

    def over_http(sql):
        http_conn.request("POST", "/api/v1/sql", json.dumps({"sql": sql, "purpose": "benchmark: wire vs http"}),
                          {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        response = http_conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)

    def over_http_stream(sql, firsts=None):
        # `"stream": true`: a long answer sent as it is produced; `firsts` gets the time
        # until its first bytes arrived.
        t = time.perf_counter()
        http_conn.request("POST", "/api/v1/sql",
                          json.dumps({"sql": sql, "purpose": "benchmark: wire vs http", "stream": True}),
                          {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        response = http_conn.getresponse()
        first = response.read1(1 << 16)
        if firsts is not None:
            firsts.append((time.perf_counter() - t) * 1000)
        body = first + response.read()
        assert response.status == 200, body
        return json.loads(body)

    wire = psycopg.connect(host="127.0.0.1", port=pg_port, user="cockpit", password=token, dbname="citybrain",
                           autocommit=True, options="-c purpose=benchmark:\\ wire\\ vs\\ http")

    def over_wire(sql):
        with wire.cursor() as cur:
            cur.execute(sql, prepare=True)
            return cur.description, cur.fetchall()

    def peak_rss_mib():
        # VmHWM: the server's peak resident set so far (reset before each statement).
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

    def reset_peak():
        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
            f.write("5")

    results = []
    day = "SELECT ts, checkpoint_id, plate, speed_kmh FROM transport.anpr_passages"
    for rows in (100, 10_000, None):
        sql = (f"{day} ORDER BY ts, checkpoint_id, plate LIMIT {rows}" if rows else day)
        runs, warm = (args.runs, 20) if rows else (args.long_runs, 2)
        reference = over_http(sql)
        description, got = over_wire(sql)
        columns = [d.name for d in description]
        assert len(got) == len(reference) and (rows is None or len(got) == rows), (len(got), len(reference))
        if rows is None:
            rows = len(got)
            assert sorted((a[1], a[2]) for a in got) == sorted((b["checkpoint_id"], b["plate"]) for b in reference)
        else:
            for a, b in zip(got, reference):
                assert a[1] == b["checkpoint_id"] and a[2] == b["plate"], (a, b)
        del got, reference
        for _ in range(warm):
            over_http(sql)
            over_wire(sql)
        long = rows >= 10_000
        if long:
            streamed = over_http_stream(sql)
            assert len(streamed) == rows, (len(streamed), rows)
            del streamed
            for _ in range(warm):
                over_http_stream(sql)
        http_ms, wire_ms, stream_ms = [], [], []
        peaks = {}
        for _ in range(runs):
            t = time.perf_counter(); over_http(sql); http_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter(); over_wire(sql); wire_ms.append((time.perf_counter() - t) * 1000)
            if long:
                t = time.perf_counter(); over_http_stream(sql); stream_ms.append((time.perf_counter() - t) * 1000)
        first_row_ms = stream_first_ms = None
        if long:
            for name, read in (("http", lambda: over_http(sql)), ("wire", lambda: over_wire(sql)),
                               ("http_stream", lambda: over_http_stream(sql))):
                reset_peak()
                read()
                peaks[name] = round(peak_rss_mib(), 1)
            firsts = []
            for _ in range(min(runs, 20)):
                with wire.cursor() as cur:
                    t = time.perf_counter()
                    for _row in cur.stream(sql):
                        firsts.append((time.perf_counter() - t) * 1000)
                        break
            first_row_ms = statistics.median(firsts)
            firsts = []
            for _ in range(min(runs, 20)):
                over_http_stream(sql, firsts)
            stream_first_ms = statistics.median(firsts)
        q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
        record = {"rows": rows, "runs": runs, "order_by_limit": sql != day, "http_p50_ms": round(q(http_ms, .5), 2),
                  "http_p99_ms": round(q(http_ms, .99), 2), "wire_p50_ms": round(q(wire_ms, .5), 2),
                  "wire_p99_ms": round(q(wire_ms, .99), 2),
                  "wire_over_http_p50": round(q(wire_ms, .5) / q(http_ms, .5), 3),
                  "wire_first_row_ms": first_row_ms and round(first_row_ms, 2),
                  "http_stream_p50_ms": round(q(stream_ms, .5), 2) if stream_ms else None,
                  "http_stream_p99_ms": round(q(stream_ms, .99), 2) if stream_ms else None,
                  "http_stream_first_bytes_ms": stream_first_ms and round(stream_first_ms, 2),
                  "server_peak_rss_mib": peaks or None, "cores": os.cpu_count(),
                  "bin": args.bin, "answers_agree": True}
        print(json.dumps(record))
        results.append(record)
    if args.out:
        with open(args.out, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    wire.close()
    proc.terminate()
    proc.wait()
    shutil.rmtree(data)


if __name__ == "__main__":
    main()
