#!/usr/bin/env python3
"""The evaluation's summary from `citybrain signals compare` results: per network the three
controllers (delay, delay with entry wait, travel, arrived, teleports, emergency braking,
last arrival), citybrain / max-pressure ratios with their geometric mean and the worst
network, and the emergency runs (stops, travel over free flow, others' delay).

    python3 bench/signals/summary.py target/signals NAME...
"""
import json
import math
import os
import sys

out, names = sys.argv[1], sys.argv[2:]
rows, ratios, ratios_entry, emergency = [], [], [], []
print("| network | controller | delay s | delay+entry s | travel s | arrived | teleports | e-braking | last arrival s | decide p99 µs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in names:
    path = os.path.join(out, name, "results.json")
    if not os.path.exists(path):
        print(f"| {name} | (no results) | | | | | | | | |")
        continue
    runs = {r["controller"]: r for r in json.load(open(path))}
    for label in ["fixed-time", "max-pressure", "citybrain"]:
        r = runs.get(label)
        if r is None:
            continue
        print(f"| {name} | {label} | {r['mean_delay_s']:.1f} | {r['mean_delay_with_entry_s']:.1f} | "
              f"{r['mean_travel_s']:.1f} | {r['arrived']}/{r['vehicles']} | {r['teleports']} | "
              f"{r['emergency_braking']} | {r['last_arrival_s']:.0f} | {r['decide_p99_us']:.0f} |")
    mp, cb = runs.get("max-pressure"), runs.get("citybrain")
    if mp and cb and mp["mean_delay_s"] > 0:
        ratios.append((cb["mean_delay_s"] / mp["mean_delay_s"], name))
        ratios_entry.append((cb["mean_delay_with_entry_s"] / mp["mean_delay_with_entry_s"], name))
    with_p = runs.get("citybrain+ambulances")
    without = runs.get("citybrain+ambulances, no preemption")
    if with_p and cb:
        emergency.append((name, with_p, without, cb))

def geomean(xs):
    return math.exp(sum(math.log(x) for x, _ in xs) / len(xs)) if xs else float("nan")

print()
print("| network | citybrain / max-pressure delay | with entry wait |")
print("|---|---:|---:|")
for (r, name), (re, _) in zip(ratios, ratios_entry):
    print(f"| {name} | {r:.3f} | {re:.3f} |")
if ratios:
    print(f"| **geometric mean** ({len(ratios)} networks) | **{geomean(ratios):.3f}** | **{geomean(ratios_entry):.3f}** |")
    w, we = max(ratios), max(ratios_entry)
    print(f"| worst | {w[0]:.3f} ({w[1]}) | {we[0]:.3f} ({we[1]}) |")
    print(f"| networks ≤ 0.8 | {sum(r <= 0.8 for r, _ in ratios)} of {len(ratios)} | {sum(r <= 0.8 for r, _ in ratios_entry)} of {len(ratios_entry)} |")

if emergency:
    print()
    print("| network | ambulances arrived | halts at signals, all six (with / without preemption) | of those, held for another ambulance | halts anywhere | worst travel over free flow | others' delay vs no emergency runs | with entry wait | teleports |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, w, wo, cb in emergency:
        ambs = w["ambulances"]
        stops = sum(a["stops"] for a in ambs)
        stops_wo = sum(a["stops"] for a in wo["ambulances"]) if wo else float("nan")
        at = sum(a.get("signal_stops", 0) for a in ambs)
        at_wo = sum(a.get("signal_stops", 0) for a in wo["ambulances"]) if wo else float("nan")
        held = sum(a.get("yielded_stops", 0) for a in ambs)
        worst = max((a["travel_s"] / a["free_flow_s"] - 1) * 100 for a in ambs) if ambs else float("nan")
        d = (w["mean_delay_s"] / cb["mean_delay_s"] - 1) * 100
        de = (w["mean_delay_with_entry_s"] / cb["mean_delay_with_entry_s"] - 1) * 100
        print(f"| {name} | {len(ambs)}/6 | {at} / {at_wo} | {held} | {stops} / {stops_wo} | {worst:+.1f}% | {d:+.1f}% | {de:+.1f}% | {w['teleports']} |")
