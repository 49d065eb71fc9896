#!/usr/bin/env python3
"""Time to the banner, to every scene caught up, and a GROUP BY over the demo passages, for one
binary on a fresh demo data directory: python3 bench/first-build/readiness.py BINARY DATA_DIR
(DATA_DIR is removed first)."""
import json, subprocess, sys, time, urllib.request, shutil, os
binary, data = sys.argv[1], sys.argv[2]
shutil.rmtree(data, ignore_errors=True)
t0 = time.time()
p = subprocess.Popen([binary, "up", "--listen", "127.0.0.1:0", "--data", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "CITYBRAIN_LOG": "warn"})
for line in p.stdout:
    if line.startswith("citybrain is up on "):
        base = line.split()[4].rstrip("/"); break
up = time.time() - t0
token = open(os.path.join(data, "cockpit.token")).read().strip()
while True:
    r = json.load(urllib.request.urlopen(urllib.request.Request(base + "/api/v1/scenes", headers={"Authorization": "Bearer " + token})))
    if all(f["caught_up"] for s in r["scenes"] for f in s["feed"]) and all(s["state"] in ("running", "idle") for s in r["scenes"]):
        break
    time.sleep(0.05)
caught = time.time() - t0
q0 = time.time()
for _ in range(5):
    urllib.request.urlopen(urllib.request.Request(base + "/api/v1/sql", data=json.dumps({"sql": "SELECT checkpoint_id, count(*) FROM transport.anpr_passages GROUP BY 1", "purpose": "timing"}).encode(), headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})).read()
q = (time.time() - q0) / 5
print(f"{binary}: banner after {up:.1f} s, every scene caught up after {caught:.1f} s, GROUP BY over the demo's passages {q*1000:.0f} ms (mean of 5)")
p.terminate(); p.wait()
