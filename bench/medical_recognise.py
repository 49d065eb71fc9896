#!/usr/bin/env python3
"""Recognition answers under load (issue 27's target: p99 < 20 ms at 2,000 requests/s).

Usage: python3 bench/medical_recognise.py BIN [--seconds 20] [--clients 8] [--wrk 16,64,256]
Starts BIN (a release build) with the demo city (20,000 patients' results from eight
hospitals), then CLIENTS threads each send `POST /api/v1/medical/recognise` as the demo
hospital's doctor, one after another over a kept-alive connection, every request a new order
id for one of the planted orders (so each is decided, audited and stored in the ledger: two
fsyncs). Prints requests/s, latency percentiles and the ledger's row count against the
requests answered. Python's client costs its share of the two cores; a closed loop, so
it measures what the server sustains, not its latency at a fixed offered rate.

With --wrk CONNS the load comes from wrk (Debian) instead, one run per connection count,
each request a new order id (thread number and a counter) for one of the planted orders;
wrk's own percentiles, and the ledger's rows against wrk's answers.
"""
import argparse, http.client, json, os, shutil, statistics, subprocess, tempfile, threading, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--wrk", default="", help="connection counts for wrk, e.g. 16,64,256")
    ap.add_argument("--extra-results", type=int, default=0,
                    help="store this many more results (other patients) before measuring, e.g. 10000000")
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
    if args.extra_results:
        add_results(args.extra_results, host, port, data, proc.pid)
    if args.wrk:
        run_wrk(args, host, port, data, token, planted)
        proc.terminate()
        proc.wait()
        shutil.rmtree(data)
        return
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


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def add_results(n, host, port, data, pid):
    """N results of other patients (ids that never match a planted order), published by a
    health publisher in bodies of 500,000 rows; waits for the medical scene to hold them."""
    import random
    admin = open(os.path.join(data, "admin.token")).read().strip()

    def call(path, body, tok=admin, ctype="application/json"):
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        conn.request("POST", path, body if isinstance(body, bytes) else json.dumps(body),
                     {"Authorization": "Bearer " + tok, "Content-Type": ctype})
        r = conn.getresponse()
        text = r.read()
        if r.status >= 300:
            raise SystemExit(f"{path}: {r.status} {text[:300]}")
        return json.loads(text)

    call("/api/v1/principals", {"name": "bench_health", "department": "health", "role": "publisher"})
    tok = call("/api/v1/principals/bench_health/tokens", {})["token"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    codes = [json.loads(l)["code"] for l in open(os.path.join(root, "crates/medical/data/test_types.ndjson")) if l.strip()]
    rng = random.Random(7)
    started = time.time()
    chunk = 500_000
    for start in range(0, n, chunk):
        lines = []
        for i in range(start, min(n, start + chunk)):
            day = 1 + rng.randrange(59)
            lines.append('{"result_id":"bench-%d","patient_id":"9%017d","test_code":"%s","body_site":null,'
                         '"hospital":"bench_hospital","performed_at":"2026-%02d-%02dT09:00:00+08:00","result":"normal","report":"-"}'
                         % (i, i // 3, codes[i % len(codes)], 9 + day // 30, 1 + day % 30))
        call("/api/v1/datasets/health.test_results/records", ("\n".join(lines) + "\n").encode(), tok,
             "application/x-ndjson")
        print(f"  {min(n, start + chunk):,} results stored ({time.time() - started:.0f} s, server RSS {rss_mib(pid):.0f} MiB)", flush=True)
    # Wait for the medical scene's watermark to reach what was stored.
    while True:
        conn = http.client.HTTPConnection(host, int(port))
        conn.request("GET", "/api/v1/scenes", headers={"Authorization": "Bearer " + admin})
        scene = next(x for x in json.loads(conn.getresponse().read())["scenes"] if x["name"] == "medical")
        if all(f["applied"] >= f["head"] for f in scene["feed"] if f.get("head")):
            break
        time.sleep(1)
    print(f"{n:,} more results held by the medical scene after {time.time() - started:.0f} s; server RSS {rss_mib(pid):.0f} MiB", flush=True)


def ledger_rows(host, port, data, prefix):
    admin = open(os.path.join(data, "cockpit.token")).read().strip()
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", "/api/v1/sql", json.dumps({"sql": f"SELECT count(*) AS n FROM medical.recognitions WHERE recognition_id LIKE 'hz_first_people/{prefix}%'", "purpose": "benchmark: ledger count"}),
                 {"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())[0]["n"]


def run_wrk(args, host, port, data, token, planted):
    import re
    orders = ",\n".join(
        "{%s}" % ", ".join(f'{k} = {json.dumps(v)}' for k, v in
                           [("patient_id", o["patient_id"]), ("test_code", o["test_code"]),
                            ("body_site", o.get("body_site") or ""), ("at", o["at"])])
        for o in planted)
    for conns in [int(c) for c in args.wrk.split(",")]:
        prefix = f"wrk{conns}-"
        lua = f"""
local orders = {{ {orders} }}
local extra_patients = {args.extra_results // 3}
local codes = {{ "CBC", "CRP", "LFT", "RFT", "GLU", "LIPID" }}
local threads = {{}}
function setup(thread) thread:set("tid", #threads); table.insert(threads, thread) end
function init(args) n = 0 end
function request()
  n = n + 1
  local o = orders[(n * 7919 + tid) % #orders + 1]
  if extra_patients > 0 and n % 2 == 0 then
    -- Every other request asks about one of the extra patients, spread over all of them.
    local p = (n * 104729 + tid * 7) % extra_patients
    o = {{ patient_id = string.format("9%017d", p), test_code = codes[n % #codes + 1], body_site = "", at = "2026-11-22T10:00:00+08:00" }}
  end
  local site = ""
  if o.body_site ~= "" then site = ', "body_site": "' .. o.body_site .. '"' end
  local body = '{{"order_id": "{prefix}' .. tid .. '-' .. n .. '", "patient_id": "' .. o.patient_id ..
    '", "test_code": "' .. o.test_code .. '"' .. site .. ', "at": "' .. o.at ..
    '", "purpose": "benchmark: recognition under load"}}'
  return wrk.format("POST", "/api/v1/medical/recognise",
    {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/json"}}, body)
end
"""
        script = os.path.join(data, f"recognise-{conns}.lua")
        open(script, "w").write(lua)
        out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{int(args.seconds)}s", "--latency",
                              "-s", script, f"http://{host}:{port}"], capture_output=True, text=True).stdout
        print(out)
        answered = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        stored = ledger_rows(host, port, data, prefix)
        print(f"wrk -c {conns}: {answered} answered, {non2xx} not 2xx; ledger rows {stored} "
              f"(>= answered 2xx: {stored >= answered - non2xx}; wrk stops with requests in flight)")


if __name__ == "__main__":
    main()
