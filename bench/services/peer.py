"""DuckDB on the same work as `citybrain services bench`: the population in an in-memory
table (typed, loaded before timing), every rule's SQL condition counted and checksummed in one
scan (count and sum FILTER per rule: less work than citybrain, which keeps every eligible
row), median of warm runs on the same threads. Checks the answers agree, rule by rule.

Usage: peer.py WORK_DIR THREADS RUNS   (after `citybrain services bench --out WORK_DIR`)
"""
import json
import statistics
import sys
import time

import duckdb

work, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ours = json.load(open(f"{work}/citybrain.json"))
rules = json.load(open(f"{work}/rules.json"))
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(
    f"""CREATE TABLE facts AS SELECT * FROM read_csv('{work}/facts.csv', header = true, columns = {{
      'row': 'BIGINT', 'age': 'BIGINT', 'local_hukou': 'BOOLEAN', 'household_members': 'BIGINT',
      'disability_level': 'BIGINT', 'income_assessed': 'BOOLEAN', 'income_per_person': 'BIGINT',
      'employed': 'BOOLEAN', 'pension': 'BIGINT'}})"""
)
parts = []
for i, r in enumerate(rules):
    parts.append(f"count(*) FILTER (WHERE {r['sql']}) AS n{i}")
    parts.append(f"sum(\"row\" + 1) FILTER (WHERE {r['sql']}) AS s{i}")
query = "SELECT " + ",\n".join(parts) + " FROM facts"
times = []
for _ in range(runs + 1):  # the first run warms up and is not counted
    t = time.perf_counter()
    row = con.execute(query).fetchone()
    times.append((time.perf_counter() - t) * 1e3)
times = times[1:]
disagree = []
for i, (r, mine) in enumerate(zip(rules, ours["per_rule"])):
    n, s = row[2 * i], (row[2 * i + 1] or 0) % 2147483647
    if (n, s) != (mine["eligible"], mine["checksum"]):
        disagree.append((r["name"], (n, s), (mine["eligible"], mine["checksum"])))
result = {
    "duckdb": duckdb.__version__,
    "residents": ours["residents"],
    "rules": ours["rules"],
    "threads": threads,
    "duckdb_ms": times,
    "duckdb_ms_median": statistics.median(times),
    "citybrain_sweep_ms_median": ours["sweep_ms_median"],
    "citybrain_table_build_ms_median": ours["table_build_ms_median"],
    "citybrain_change_us_p50": ours["change_us_p50"],
    "citybrain_change_us_p99": ours["change_us_p99"],
    "citybrain_code_verify_us_p50": ours["code_verify_us_p50"],
    "citybrain_code_verify_us_p99": ours["code_verify_us_p99"],
    "answers_agree": not disagree,
    "disagreements": disagree[:5],
}
json.dump(result, open(f"{work}/results.json", "w"), indent=2)
print(f"| {ours['residents']:,} residents, {ours['rules']} rules, {threads} threads | citybrain | DuckDB {duckdb.__version__} |")
print("|---|---|---|")
print(f"| every rule for every resident (median of {runs}, warm) | {ours['sweep_ms_median']:.0f} ms "
      f"(+ {ours['table_build_ms_median']:.0f} ms building the facts table) | {statistics.median(times):.0f} ms |")
print(f"| one fact change re-decided (p50 / p99) | {ours['change_us_p50']:.0f} / {ours['change_us_p99']:.0f} µs | — |")
print(f"| a code verified offline (p50 / p99) | {ours['code_verify_us_p50']:.0f} / {ours['code_verify_us_p99']:.0f} µs | — |")
print(f"| answers agree (count and checksum per rule) | {'yes' if not disagree else 'NO: ' + str(disagree[:3])} | |")
if disagree:
    sys.exit(1)
