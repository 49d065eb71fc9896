"""The one call at the desk under load (issue 26, item 5): `POST /api/v1/verify/checkin`
from wrk on loopback against a release build on the demo city, as the demo hotel's front
desk, for a guest with a booking and a green health code. Every call is decided and audited
(one audit line, fsynced, group-committed).

Usage: python3 bench/services/checkin.py BIN [--seconds 20] [--connections 16,64]
Needs wrk (Debian package). Prints wrk's latency distribution per run and a summary table.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("bin")
p.add_argument("--seconds", type=int, default=20)
p.add_argument("--connections", default="16,64")
args = p.parse_args()

data = tempfile.mkdtemp(prefix="checkin-bench-")
port = 18900
server = subprocess.Popen(
    [args.bin, "up", "--listen", f"127.0.0.1:{port}", "--data", data],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    env={**os.environ, "CITYBRAIN_LOG": "error"},
)
for line in server.stdout:
    if line.startswith("citybrain is up"):
        break
base = f"http://127.0.0.1:{port}"


def call(path, token, body=None):
    req = urllib.request.Request(base + path, method="POST" if body is not None else "GET")
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
        req.data = json.dumps(body).encode()
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


admin = open(f"{data}/admin.token").read().strip()
desk = open(f"{data}/desk.token").read().strip()
# Wait for the services scene to hold the demo's people and bookings.
while True:
    scenes = call("/api/v1/scenes", admin)["scenes"]
    s = next(x for x in scenes if x["name"] == "services")
    if s["state"] == "running" and all(f["applied"] >= f["head"] for f in s["feed"] if f["head"]):
        break
    time.sleep(0.2)
guest = call("/api/v1/sql", desk, {"sql": "SELECT resident_id FROM tourism.bookings WHERE check_in = current_date AND nights > 1 LIMIT 1", "purpose": "bench"})[0]["resident_id"]
for path, body in [("/api/v1/departments", {"id": "health", "name": "health"}),
                   ("/api/v1/principals", {"name": "bench_health", "department": "health", "role": "publisher"})]:
    try:
        call(path, admin, body)
    except urllib.error.HTTPError:
        pass
health = call("/api/v1/principals/bench_health/tokens", admin, {})["token"]
code = call("/api/v1/services/codes/issue", health, {"kind": "health", "resident_id": guest})["code"]
body = {"id_number": guest, "code": code}
answer = call("/api/v1/verify/checkin", desk, body)
print("one check:", json.dumps(answer, ensure_ascii=False))
assert answer["admit"] is True, answer
script = os.path.join(data, "checkin.lua")
with open(script, "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write(f'wrk.headers["Authorization"] = "Bearer {desk}"\n')
    f.write('wrk.headers["Content-Type"] = "application/json"\n')
    f.write(f"wrk.body = [[{json.dumps(body)}]]\n")
rows = []
for c in [int(x) for x in args.connections.split(",")]:
    out = subprocess.run(["wrk", "-t2", f"-c{c}", f"-d{args.seconds}s", "--latency", "-s", script,
                          base + "/api/v1/verify/checkin"], capture_output=True, text=True).stdout
    print(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rows.append((c, rps, lat.get("50"), lat.get("99"), int(non2xx.group(1)) if non2xx else 0))
server.terminate()
server.wait()
print("| connections | checks/s | p50 | p99 | non-2xx |")
print("|---:|---:|---:|---:|---:|")
for c, rps, p50, p99, bad in rows:
    print(f"| {c} | {rps:,.0f} | {p50} | {p99} | {bad} |")
