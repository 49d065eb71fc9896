"""What the cluster benchmarks share (bench/cluster/failover, bench/cluster/scale): three
NATS servers in one JetStream cluster, a scratch PostgreSQL, citybrain nodes over them, and
a benchmark dataset with its department and token. Ports from a base P: nodes P+1..,
NATS clients P+11..P+13, routes P+21..P+23, PostgreSQL P+30."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/citybrain-target"))

DEFINITION = """name = "bench.failover"
owner = "bench"
description = "Failover benchmark: numbered batches of numbered records"
sharing = "unconditional"
event_time = "ts"

[[fields]]
name = "ts"
type = "timestamp"
class = "public"
[[fields]]
name = "batch"
type = "int"
class = "public"
[[fields]]
name = "seq"
type = "int"
class = "public"
"""


def call(method, url, token=None, body=None, content_type="application/json", timeout=30,
         headers=None):
    request = urllib.request.Request(url, data=body, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Node:
    def __init__(self, n, cluster, binary):
        self.n = n
        self.port = cluster.ports + n
        self.data = cluster.dir / f"node{n}"
        self.binary = binary
        self.config = cluster.config
        self.seal_rows = cluster.seal_rows
        self.process = None
        self.starts = 0
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, demo=False):
        self.starts += 1
        log = open(self.data.parent / f"node{self.n}.{self.starts}.log", "w")
        command = [
            str(self.binary), "up", "--config", str(self.config), "--data", str(self.data),
            "--listen", f"127.0.0.1:{self.port}", "--seal-rows", str(self.seal_rows),
        ]
        if not demo:
            command.append("--no-demo")
        self.data.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return log.name

    def wait_ready(self, log, limit=300):
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if "citybrain is up on" in Path(log).read_text(errors="replace"):
                return time.monotonic() - started
            if self.process.poll() is not None:
                sys.exit(f"node {self.n} exited; its log {log} ends:\n" + Path(log).read_text()[-3000:])
            time.sleep(0.05)
        sys.exit(f"node {self.n} never came up; see {log}")

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()



class Cluster:
    """NATS (three servers, one JetStream cluster), PostgreSQL and the deployment file."""

    def __init__(self, dir, ports, replicas=3, seal_rows=20000):
        self.dir = dir
        self.ports = ports
        self.seal_rows = seal_rows
        self.processes = []
        self.nodes = []
        nats = subprocess.run([ROOT / "scripts/install-nats"], capture_output=True, text=True,
                              check=True).stdout.strip()
        routes = ",".join(f"nats-route://127.0.0.1:{ports + 21 + i}" for i in range(3))
        for i in range(3):
            d = dir / f"nats{i}"
            d.mkdir(parents=True)
            (d / "nats.conf").write_text(
                f'server_name: n{i}\nlisten: 127.0.0.1:{ports + 11 + i}\n'
                f'jetstream {{ store_dir: "{d}/js" }}\n'
                f'cluster {{ name: bench\n listen: 127.0.0.1:{ports + 21 + i}\n routes: [{routes}] }}\n')
            self.processes.append(subprocess.Popen([nats, "-c", str(d / "nats.conf")],
                                                   stdout=open(d / "log", "w"), stderr=subprocess.STDOUT))
        pg_url = self._start_postgres(dir / "pg", ports + 30)
        self.config = dir / "deploy.toml"
        urls = ",".join(f"nats://127.0.0.1:{ports + 11 + i}" for i in range(3))
        self.config.write_text(
            f'[log]\nbackend = "jetstream"\nurl = "{urls}"\nreplicas = {replicas}\ntimeout_s = 10\n\n'
            f'[catalog]\nbackend = "postgres"\nurl = "{pg_url}"\ntimeout_s = 5\n\n'
            f'[segments]\nbackend = "directory"\npath = "{dir / "segments"}"\n')

    @staticmethod
    def _start_postgres(pg_dir, port):
        """Starts PostgreSQL on `port`, or, if something else took it meanwhile (a test
        running beside this one), on a port the system says is free; returns its URL."""
        for attempt in range(4):
            done = subprocess.run([ROOT / "scripts/scratch-postgres", "start", str(pg_dir), str(port)],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout.strip()
            print(f"PostgreSQL did not start on port {port} (attempt {attempt + 1}): "
                  f"{done.stderr.strip()[-300:]}", file=sys.stderr)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        raise RuntimeError(f"PostgreSQL would not start in {pg_dir}: see {pg_dir}/server.log")

    def start_nodes(self, count, binary):
        """Starts `count` nodes, the first making the hub's secret, and the benchmark dataset;
        returns its writer's token."""
        self.nodes = [Node(n, self, binary) for n in range(1, count + 1)]
        first = self.nodes[0]
        first.wait_ready(first.start())
        for n in self.nodes[1:]:
            n.data.mkdir(parents=True, exist_ok=True)
            (n.data / "secret.key").write_bytes((first.data / "secret.key").read_bytes())
            n.wait_ready(n.start())
        admin = (first.data / "admin.token").read_text().strip()
        base = first.base
        status, text = call("POST", f"{base}/api/v1/departments", admin,
                            json.dumps({"id": "bench", "name": "Benchmark"}).encode())
        assert status in (201, 409), text
        status, text = call("POST", f"{base}/api/v1/principals", admin,
                            json.dumps({"name": "bench_ops", "department": "bench", "role": "admin"}).encode())
        assert status in (201, 409), text
        status, text = call("POST", f"{base}/api/v1/principals/bench_ops/tokens", admin, b"{}")
        assert status == 201, text
        token = json.loads(text)["token"]
        status, text = call("POST", f"{base}/api/v1/datasets", token, DEFINITION.encode(), "application/toml")
        assert status == 201, text
        # The other nodes take the new dataset from the shared catalog within seconds.
        for n in self.nodes[1:]:
            deadline = time.monotonic() + 30
            while call("GET", f"{n.base}/api/v1/datasets/bench.failover", token)[0] != 200:
                assert time.monotonic() < deadline, f"node {n.n} never served the dataset"
                time.sleep(0.2)
        return token

    def stop(self):
        for node in self.nodes:
            node.stop()
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.wait()
        subprocess.run([ROOT / "scripts/scratch-postgres", "stop", str(self.dir / "pg"), "immediate"],
                       capture_output=True)


def batch_body(b, records):
    ts = "2026-11-22T08:00:00+08:00"
    return "".join(f'{{"ts":"{ts}","batch":{b},"seq":{i}}}\n' for i in range(records)).encode()


def binary():
    """CITYBRAIN_BIN, or the debug build (built if need be)."""
    if "CITYBRAIN_BIN" in os.environ:
        return Path(os.environ["CITYBRAIN_BIN"])
    subprocess.run(["cargo", "build", "-q", "-p", "citybrain"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    return TARGET / "debug/citybrain"


def commit():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
