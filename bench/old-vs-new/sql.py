#!/usr/bin/env python3
"""One SQL query through two builds, alternating, many times: for a query too short for
bench/hub.py's best-of-3 to tell two builds apart (a 15 ms GROUP BY).

Usage: python3 bench/old-vs-new/sql.py OLD_BIN NEW_BIN [--scale 2.5] [--runs 60]
Both servers load the same generated passages (NDJSON over HTTP, as bench/hub.py does), wait
until idle, then take turns answering the query; prints each build's median and spread.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hub  # noqa: E402  (bench/hub.py: start, publisher_env, sql, settle)

QUERIES = {
    "COUNT(*) GROUP BY checkpoint": "SELECT checkpoint_id, count(*) FROM transport.anpr_passages GROUP BY 1",
    "COUNT(DISTINCT plate)": "SELECT count(DISTINCT plate) FROM transport.anpr_passages",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--scale", type=float, default=2.5)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="citybrain-sql-")
    hub.BIN = args.new
    city = os.path.join(work, "city")
    hub.run("gen", "--seed", "7", "--scale", str(args.scale), "--out", city)
    ndjson = os.path.join(city, "anpr_passages.ndjson")
    definition = os.path.join(city, "definitions", "transport.anpr_passages.toml")
    servers = {}
    for name, binary in (("old", args.old), ("new", args.new)):
        hub.BIN = binary
        data = os.path.join(work, name)
        proc, base = hub.start(data)
        env = hub.publisher_env(data, base)
        hub.run("datasets", "create", definition, env=env)
        hub.run("ingest", "transport.anpr_passages", ndjson, "--batch", "10000", env=env)
        hub.settle(proc)
        token = open(os.path.join(data, "transport.token")).read().strip()
        servers[name] = (proc, base, token)
    try:
        for label, query in QUERIES.items():
            times = {"old": [], "new": []}
            answers = {}
            for i in range(args.runs):
                for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
                    _, base, token = servers[name]
                    seconds, rows = hub.sql(base, token, query)
                    times[name].append(seconds * 1000)
                    answers[name] = sorted(map(str, rows))
            assert answers["old"] == answers["new"], "the two builds answer differently"
            med = {k: statistics.median(v) for k, v in times.items()}
            q = lambda v, p: sorted(v)[int(p * (len(v) - 1))]
            print(f"{label}: old {med['old']:.2f} ms (p10 {q(times['old'], .1):.2f}, p90 {q(times['old'], .9):.2f}); "
                  f"new {med['new']:.2f} ms (p10 {q(times['new'], .1):.2f}, p90 {q(times['new'], .9):.2f}); "
                  f"new/old {med['new'] / med['old']:.3f}; {args.runs} runs each, alternating; answers equal")
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
