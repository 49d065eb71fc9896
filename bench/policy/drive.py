"""Runs bench/policy/run's measurements: citybrain (RUNS times, median) and the peer, for the
20 template policies and for their variants. See bench/policy/run."""

import json
import os
import statistics
import subprocess
import sys

cb, economy, templates, variants, work, runs = sys.argv[1:7]
runs = int(runs)
here = os.path.dirname(os.path.abspath(__file__))
python = sys.executable
results = []
for label, policies in (("20 policies", templates), ("variants", variants)):
    n = len([f for f in os.listdir(policies) if f.endswith(".policy")])
    summary = os.path.join(work, f"citybrain-{n}.json")
    # One thread and two, as OpenFisca in one process and two (peer.py).
    times, rss = {1: [], 2: []}, []
    for _ in range(runs):
        for threads in (1, 2):
            out = subprocess.run(
                ["/usr/bin/time", "-f", "%M", cb, "policy", "run", policies, economy,
                 "--summary", summary, "--threads", str(threads)],
                check=True, capture_output=True, text=True,
            )
            rss.append(int(out.stderr.strip().splitlines()[-1]) / 1024)
            times[threads].append(json.load(open(summary))["decide_seconds"])
    ours = json.load(open(summary))
    peer_out = os.path.join(work, f"peer-{n}.json")
    subprocess.run([python, os.path.join(here, "peer.py"), economy, policies, summary, peer_out,
                    str(runs)], check=True)
    peer = json.load(open(peer_out))
    row = {
        "policies": n,
        "enterprises": ours["enterprises"],
        "citybrain_decide_seconds_median": statistics.median(times[2]),
        "citybrain_decide_seconds_all": times[2],
        "citybrain_1_thread_seconds_median": statistics.median(times[1]),
        "citybrain_1_thread_seconds_all": times[1],
        "openfisca_2_processes_seconds": peer["openfisca_seconds_2_processes"],
        "openfisca_all_seconds": peer["openfisca_all_seconds"],
        "openfisca_peak_rss_mb_2_processes": peer["openfisca_peak_rss_mb_2_processes"],
        "speedup_1_thread": peer["openfisca_seconds_1_process"] / statistics.median(times[1]),
        "speedup_2_threads": peer["openfisca_seconds_2_processes"] / statistics.median(times[2]),
        "citybrain_peak_rss_mb": max(rss),
        "citybrain_not_compiled": ours["not_compiled"],
        "openfisca_seconds": peer["openfisca_seconds"],
        "openfisca_rss_mb_before": peer["openfisca_rss_mb_before_calculation"],
        "openfisca_peak_rss_mb": peer["openfisca_peak_rss_mb_during_calculation"],

        "citybrain_vs_exact_reference_mismatches": peer["citybrain_vs_reference_mismatches"],
        "openfisca_policies_with_amounts_off_by_a_fen": len(peer["openfisca_amounts_off_by_a_fen"]),
        "openfisca_worst_policy_off_by_a_fen": max(
            ([p, d[0], d[1]] for p, d in peer["openfisca_amounts_off_by_a_fen"].items()),
            key=lambda x: x[1] / max(x[2], 1), default=None),
        "openfisca_eligibility_differences": peer["openfisca_eligibility_differences"],
    }
    results.append(row)
    print(
        f"{n} policies × {row['enterprises']} enterprises: 1 thread: citybrain {row['citybrain_1_thread_seconds_median']:.3f} s, "
        f"OpenFisca {row['openfisca_seconds']:.2f} s = {row['speedup_1_thread']:.1f}×; 2 threads/processes: citybrain "
        f"{row['citybrain_decide_seconds_median']:.3f} s, OpenFisca {row['openfisca_2_processes_seconds']:.2f} s = "
        f"{row['speedup_2_threads']:.1f}× (medians of {runs}; citybrain peak RSS {row['citybrain_peak_rss_mb']:.0f} MB, "
        f"OpenFisca {row['openfisca_rss_mb_before']}→{row['openfisca_peak_rss_mb']} MB); "
        f"citybrain vs exact reference: {len(row['citybrain_vs_exact_reference_mismatches'])} policies differ; "
        f"OpenFisca off by ≥1 fen in {row['openfisca_policies_with_amounts_off_by_a_fen']} policies "
        f"(worst: {row['openfisca_worst_policy_off_by_a_fen']})",
        flush=True,
    )
# One enterprise explained against every variant (the enterprise-facing page).
with open(economy, encoding="utf-8") as f:
    header = f.readline().strip().split(",")
    first = f.readline().strip().split(",")
facts = os.path.join(work, "facts.json")
json.dump(dict(zip(header, first)), open(facts, "w"), ensure_ascii=False)
explain_ms = []
for _ in range(5):
    out = subprocess.run([cb, "policy", "explain", variants, facts], check=True,
                         capture_output=True, text=True).stdout
    explain_ms.append(float(out.rsplit("explained in ", 1)[1].split(" ms")[0]))
n = len([f for f in os.listdir(variants) if f.endswith(".policy")])
print(f"one enterprise explained against {n} policies: {statistics.median(explain_ms):.2f} ms "
      f"(median of 5; all {explain_ms})", flush=True)
results.append({"explain_policies": n, "explain_ms_median": statistics.median(explain_ms),
                "explain_ms_all": explain_ms})
json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=1, ensure_ascii=False)
