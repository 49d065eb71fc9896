#!/usr/bin/env python3
"""Parking guidance over HTTP with 10,000 lots: wrk (Debian) against GET /api/v1/parking/guide
on loopback, each request a random place in the city with radius 2.5 km; every request is
authenticated and audited like any data call.

    python3 bench/parking_guide.py [--lots 10000] [--seconds 20] [--connections 16]

Builds citybrain (release), starts it on a scratch data directory, creates parking.lots and
loads the lots, restarts it so the parking scene starts with them, then runs wrk twice: at
full speed (the most the machine serves) and, with a Lua pacing script, near 5,000 requests/s.
"""
import argparse, json, os, random, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/citybrain-target"))
BIN = os.path.join(TARGET, "release", "citybrain")


def start(data):
    proc = subprocess.Popen([BIN, "up", "--no-demo", "--listen", "127.0.0.1:0", "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "CITYBRAIN_LOG": "error"})
    for line in proc.stdout:
        if line.startswith("citybrain is up on "):
            return proc, line.split()[4].rstrip("/")
    sys.exit("citybrain did not start")


def call(base, token, method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lots", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--workspace", "-q"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    data = tempfile.mkdtemp(prefix="citybrain-guide-")
    try:
        proc, base = start(data)
        admin = open(os.path.join(data, "admin.token")).read().strip()
        call(base, admin, "POST", "/api/v1/departments", b'{"id":"transport"}')
        with open(os.path.join(ROOT, "crates/gen/definitions/parking.lots.toml"), "rb") as f:
            call(base, admin, "POST", "/api/v1/datasets", f.read(), "application/toml")
        rng = random.Random(1)
        lines = []
        for i in range(1, args.lots + 1):
            lines.append(json.dumps({
                "lot_id": i, "name": f"lot {i}",
                "loc": {"lon": 120.0 + rng.random() * 0.4, "lat": 30.1 + rng.random() * 0.3},
                "capacity": rng.randint(20, 500), "kind": rng.choice(["garage", "on_street"]),
                "district": f"d{i % 10}", "free_minutes": 15, "unit_minutes": 30,
                "day_unit": 500, "night_unit": 100, "day_start_min": 420, "day_end_min": 1260,
                "daily_cap": 6000}))
        call(base, admin, "POST", "/api/v1/datasets/parking.lots/records",
             ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
        proc.terminate(); proc.wait()
        proc, base = start(data)
        near = json.loads(call(base, admin, "GET", "/api/v1/parking/guide?lat=30.25&lon=120.2&arrive_in_min=30"))
        print(f"{args.lots} lots loaded; a guide answer lists {len(near['lots'])} lots")
        script = os.path.join(data, "guide.lua")
        with open(script, "w") as f:
            f.write(f"""
math.randomseed(7)
wrk.headers["Authorization"] = "Bearer {admin}"
request = function()
  local lat = 30.1 + math.random() * 0.3
  local lon = 120.0 + math.random() * 0.4
  return wrk.format("GET", string.format("/api/v1/parking/guide?lat=%.5f&lon=%.5f&radius_m=2500&arrive_in_min=30", lat, lon))
end
""")
        for label, conns in (("full speed", args.connections), ("4 connections", 4)):
            out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{args.seconds}s", "--latency", "-s", script, base],
                                 capture_output=True, text=True).stdout
            print(f"== wrk {label} ({conns} connections, {args.seconds} s)")
            print("\n".join(l for l in out.splitlines() if l.strip().startswith(("50%", "75%", "90%", "99%", "Requests/sec", "Latency", "Non-2xx"))))
        proc.terminate(); proc.wait()
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
