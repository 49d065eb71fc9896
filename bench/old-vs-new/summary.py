#!/usr/bin/env python3
"""Summarises a bench/old-vs-new/run directory: per figure, old and new (median over rounds),
new/old, and whether higher is better. Prints a Markdown table.

Usage: python3 bench/old-vs-new/summary.py DIR
"""
import glob, os, re, statistics, sys

d = sys.argv[1]
figures = {}  # name -> {"old": [...], "new": [...], "better": "higher"|"lower", "unit": str}


def add(name, which, value, better, unit):
    f = figures.setdefault(name, {"old": [], "new": [], "better": better, "unit": unit})
    f[which].append(value)


for path in sorted(glob.glob(os.path.join(d, "*-*-*.*"))):
    base = os.path.basename(path)
    m = re.match(r"(hub|indices|policy)-(old|new)-(\d+)\.", base)
    if not m:
        continue
    bench, which = m.group(1), m.group(2)
    text = open(path, encoding="utf-8").read()
    if bench == "hub":
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and cells[0] not in ("benchmark", "---") and not cells[0].startswith("-"):
                try:
                    value = float(cells[1])
                except ValueError:
                    continue
                better = "higher" if cells[3] == "records/s" else "lower"
                add("hub: " + cells[0], which, value, better, cells[3])
    elif bench == "indices":
        m2 = re.search(r"\| \*\*all four\*\* \| \*\*([\d.]+) s\*\* \(peak (\d+) MiB\)", text)
        if m2:
            add("indices: all four, one pass", which, float(m2.group(1)), "lower", "s (median of 3)")
            add("indices: peak RSS", which, float(m2.group(2)), "lower", "MiB")
    else:
        for m3 in re.finditer(r"(\d+) policies × (\d+) enterprises: citybrain ([\d.]+) s", text):
            add(f"policy: {m3.group(1)} policies × {m3.group(2)} enterprises", which, float(m3.group(3)), "lower", "s (median)")
        m4 = re.search(r"explained against (\d+) policies: ([\d.]+) ms", text)
        if m4:
            add(f"policy: explain one enterprise, {m4.group(1)} policies", which, float(m4.group(2)), "lower", "ms (median of 5)")

print("| figure | old | new | new/old | better when | unit |")
print("|---|---:|---:|---:|---|---|")
for name, f in figures.items():
    if not f["old"] or not f["new"]:
        continue
    old, new = statistics.median(f["old"]), statistics.median(f["new"])
    ratio = new / old if old else float("nan")
    # A regression: slower (lower is better and new > old) or less throughput.
    worse = ratio > 1 if f["better"] == "lower" else ratio < 1
    mark = " (worse)" if worse and abs(ratio - 1) > 0.05 else ""
    print(f"| {name} | {old:g} | {new:g} | {ratio:.3f}{mark} | {f['better']} | {f['unit']}; runs old {f['old']} new {f['new']} |")
