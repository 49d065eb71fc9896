#!/usr/bin/env python3
"""Recognition answers under load (issue 27's target: p99 < 20 ms at 2,000 requests/s).

Usage: python3 bench/medical_recognise.py BIN [--seconds 20] [--clients 8]
Starts BIN (a release build) with the demo city (20,000 patients' results from eight
hospitals), then CLIENTS threads each send `POST /api/v1/medical/recognise` as the demo
hospital's doctor, one after another over a kept-alive connection, every request a new order
id for one of the planted orders (so each is decided, audited and stored in the ledger: two
fsyncs). Prints requests/s, latency percentiles and the ledger's row count against the
requests answered. Python's client costs its share of the two cores; a closed loop, so
it measures what the server sustains, not its latency at a fixed offered rate.
"""
import argparse, http.client, json, os, shutil, statistics, subprocess, tempfile, threading, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="citybrain-medical-")
    proc = subprocess.Popen([args.bin, "up", "--listen", "127.0.0.1:0", "--demo-day", "2026-11-22", "--data", data], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "CITYBRAIN_LOG": "warn"})
    for line in proc.stdout:
        if line.startswith("citybrain is up on "):
            host, port = line.split()[4].rstrip("/").split("//")[1].split(":")
            break
    token = open(os.path.join(data, "hospital.token")).read().strip()
    planted = json.load(open(os.path.join(data, "demo", "medical_orders.json")))
    latencies, errors, stop = [], [], time.time() + args.seconds
    lock = threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection(host, int(port))
        n, mine = 0, []
        while time.time() < stop:
            order = dict(planted[(k * 7919 + n) % len(planted)])
            order["order_id"] = f"bench-{k}-{n}"
            order["purpose"] = "benchmark: recognition under load"
            body = json.dumps(order)
            t = time.perf_counter()
            conn.request("POST", "/api/v1/medical/recognise", body,
                         {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - t) * 1000)
            if response.status != 200:
                errors.append(response.status)
            n += 1
        with lock:
            latencies.extend(mine)

    started = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    admin = open(os.path.join(data, "cockpit.token")).read().strip()
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", "/api/v1/sql", json.dumps({"sql": "SELECT count(*) AS n FROM medical.recognitions WHERE recognition_id LIKE 'hz_first_people/bench-%'", "purpose": "benchmark: ledger count"}),
                 {"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
    stored = json.loads(conn.getresponse().read())[0]["n"]
    print(f"{len(latencies)} recognitions in {elapsed:.1f} s with {args.clients} clients: {len(latencies) / elapsed:.0f}/s; "
          f"latency p50 {q(.5):.1f} ms, p99 {q(.99):.1f} ms, p99.9 {q(.999):.1f} ms, max {latencies[-1]:.1f} ms; "
          f"errors {len(errors)}; ledger rows {stored} (= answered: {stored == len(latencies) - len(errors)}); "
          f"{os.cpu_count()} cores")
    proc.terminate()
    proc.wait()
    shutil.rmtree(data)


if __name__ == "__main__":
    main()
