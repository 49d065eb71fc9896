"""The policy-matching benchmark's peer and its exact reference.

The same policies as citybrain's .policy files (the 20 templates below, each variant with its
own parameters read from its file), computed two ways:

- OpenFisca (PyPI openfisca-core), the reference rules-as-code engine, written as OpenFisca
  models are: an Enterprise entity, input variables, one variable per policy for eligibility
  and one for the amount, parameters in a ParameterNode with dated values, money as OpenFisca
  floats (float32) in yuan.
- An exact reference, independent of citybrain's engine: the same templates over numpy int64
  fen with rates as exact fractions and explicit integer rounding.

Usage: peer.py TABLE.csv POLICY_DIR CITYBRAIN_SUMMARY.json OUT.json [RUNS]

It times OpenFisca's calculation (the table already loaded, as for citybrain), in one process
and in two (the population split, one core each), the median of RUNS each, compares
per policy the eligible count, the total and a checksum of (row, amount) against citybrain's
summary, counts OpenFisca's amounts off by at least one fen against the reference, and
writes all of it to OUT.json.
"""

import json
import os
import re
import sys
import time
from fractions import Fraction

import numpy as np

# ---- The policy files: id, template, parameters on the policy's first day ----------------


def parse_policy(path):
    text = open(path, encoding="utf-8").read()
    pid = re.search(r"^policy (\S+)", text, re.M).group(1)
    m = re.search(r"from (\S+)\.policy", text)
    template = m.group(1) if m else pid
    start = re.search(r"^effective (\S+)", text, re.M).group(1)
    params = {}
    for m in re.finditer(r"^param (\w+)(?:: \w+)?(?: from (\S+))? = (.+)$", text, re.M):
        name, since, value = m.group(1), m.group(2), m.group(3).strip()
        if since is not None and since > start:
            continue
        params[name] = value
    return pid, template, params


def exact_value(text):
    """A parameter as an exact number: money in fen (int), rates as Fractions, ints."""
    if text.endswith(" yuan"):
        return int(Fraction(text[:-5]) * 100)
    if text.endswith("%"):
        return Fraction(text[:-1]) / 100
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return np.datetime64(text, "D")
    return int(text)


def float_value(text):
    """The same parameter as OpenFisca holds it: yuan and rates as floats."""
    v = exact_value(text)
    if isinstance(v, Fraction):
        return float(v)
    if text.endswith(" yuan"):
        return v / 100
    return v


# ---- Two kinds of arithmetic for one set of templates -------------------------------------


class Q:
    """An exact quotient: integer numerators over one denominator."""

    def __init__(self, num, den):
        self.num, self.den = num, den


class Exact:
    @staticmethod
    def mul(x, r):
        if isinstance(r, Fraction):
            return Q(x * r.numerator, r.denominator)
        return x * r

    @staticmethod
    def min(x, cap):
        if isinstance(x, Q):
            return Q(np.minimum(x.num, cap * x.den), x.den)
        return np.minimum(x, cap)

    @staticmethod
    def round_down(x):
        return x.num // x.den if isinstance(x, Q) else x

    @staticmethod
    def round_half_even(x):
        if not isinstance(x, Q):
            return x
        q, r = np.divmod(x.num, x.den)
        up = (2 * r > x.den) | ((2 * r == x.den) & (q % 2 == 1))
        return q + up

    @staticmethod
    def ratio_at_least(a, b, r):
        """b > 0 and a / b >= r."""
        return (b > 0) & (a * r.denominator >= b * r.numerator)

    @staticmethod
    def ratio_at_most(a, b, r):
        return (b > 0) & (a * r.denominator <= b * r.numerator)

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)


def _f(r):
    return float(r) if isinstance(r, Fraction) else r


class Float:
    """OpenFisca's way: money in yuan as floats, rounding to the fen at the end."""

    @staticmethod
    def mul(x, r):
        return x * _f(r)

    @staticmethod
    def min(x, cap):
        return np.minimum(x, cap)

    @staticmethod
    def round_down(x):
        return np.floor(x * 100) / 100

    @staticmethod
    def round_half_even(x):
        return np.round(x, 2)

    @staticmethod
    def ratio_at_least(a, b, r):
        return (b > 0) & (a / np.where(b > 0, b, 1) >= _f(r))

    @staticmethod
    def ratio_at_most(a, b, r):
        return (b > 0) & (a / np.where(b > 0, b, 1) <= _f(r))

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)


# ---- The twenty templates: (eligible, amount), as in crates/rules/policies ----------------
# v(name): an input column; p: the policy's parameters; X: the arithmetic; zero: 0 yuan.


def t_credit_reward(X, v, p):
    return (v("credit_rating") == "A") & (v("tax_paid") > 0), lambda: p["reward"] + 0 * v("tax_paid")


def t_digital_transformation(X, v, p):
    d = v("digital_investment")
    return d >= p["minimum"], lambda: X.round_half_even(X.min(X.mul(d, p["share"]), p["cap"]))


def t_disabled_employment(X, v, p):
    dis, emp = v("disabled_employees"), v("employees")
    return (dis >= 1) & X.ratio_at_least(dis, emp, p["min_share"]), lambda: p["per_person"] * dis


def t_energy_saving(X, v, p):
    e = v("energy_saving_investment")
    return e >= p["minimum"], lambda: X.round_down(X.min(X.mul(e, p["share"]), p["cap"]))


def t_equipment_upgrade(X, v, p):
    e = v("equipment_investment")
    return (v("industry") == "manufacturing") & (e > p["threshold"]), lambda: X.round_down(
        X.min(X.mul(e - p["threshold"], p["share"]), p["cap"])
    )


def t_export_growth(X, v, p):
    x, prev = v("exports"), v("exports_prev")
    return (prev > 0) & X.ratio_at_least(x - prev, prev, p["min_growth"]), lambda: X.round_down(
        X.min(X.mul(x - prev, p["share"]), p["cap"])
    )


def t_graduate_hiring(X, v, p):
    g = v("graduates_hired")
    return (g >= 1) & ~v("insurance_arrears"), lambda: p["per_graduate"] * np.minimum(
        g, p["max_graduates"]
    )


def t_high_tech_award(X, v, p):
    d = v("district")
    return (
        v("high_tech")
        & (v("high_tech_since") >= np.datetime64("2025-01-01"))
        & ((d == "西湖区") | (d == "滨江区"))
    ), lambda: p["award"] + 0 * v("employees")


def t_job_retention(X, v, p):
    emp, off, ins = v("employees"), v("laid_off"), v("insurance_paid")
    kept = X.ratio_at_most(off, emp, Fraction(55, 1000)) | (
        (emp <= p["small_firm"]) & X.ratio_at_most(off, emp, Fraction(20, 100))
    )
    elig = ~v("insurance_arrears") & (emp > 0) & kept & (ins > 0)
    return elig, lambda: X.where(
        emp > p["sme_limit"],
        X.round_half_even(X.mul(ins, Fraction(30, 100))),
        X.round_half_even(X.mul(ins, Fraction(60, 100))),
    )


def t_listing_award(X, v, p):
    return v("first_listing") & (v("district") == "西湖区"), lambda: p["award"] + 0 * v("employees")


def t_local_hiring(X, v, p):
    h = v("new_hires_local")
    return (h >= 1) & ~v("insurance_arrears"), lambda: X.where(
        v("employees") <= p["small_firm"], p["small_per_hire"] * h, p["per_hire"] * h
    )


def t_patent_award(X, v, p):
    n = v("patents_granted")
    capped = np.minimum(n, p["max_patents"])
    return n >= 1, lambda: X.where(
        v("high_tech"), p["high_tech_per_patent"] * capped, p["per_patent"] * capped
    )


def t_rd_subsidy(X, v, p):
    rd = v("rd_expense")
    hundred_thousand = 100000 if X is Float else 10_000_000
    elig = (v("district") == "西湖区") & (v("employees") <= 300) & (rd >= hundred_thousand)
    return elig, lambda: X.where(
        v("high_tech"),
        X.round_down(X.min(X.mul(rd, Fraction(15, 100)), p["high_tech_cap"])),
        X.round_down(X.min(X.mul(rd, p["rate"]), p["cap"])),
    )


def t_rent_relief(X, v, p):
    r = v("rent_paid")
    return v("small_business") & (r > 0), lambda: X.round_down(X.min(X.mul(r, p["share"]), p["cap"]))


def t_small_business_insurance(X, v, p):
    return (
        (v("employees") <= p["max_employees"])
        & (v("new_hires_local") >= 1)
        & ~v("insurance_arrears")
    ), lambda: X.round_half_even(X.min(X.mul(v("insurance_paid"), p["share"]), p["cap"]))


def t_specialised_sme(X, v, p):
    rev, prev, rd = v("revenue"), v("revenue_prev"), v("rd_expense")
    elig = (
        (v("employees") <= 1000)
        & (rev >= p["min_revenue"])
        & X.ratio_at_least(rev - prev, prev, p["min_growth"])
        & X.ratio_at_least(rd, rev, p["min_rd_share"])
    )
    return elig, lambda: p["award"] + 0 * v("employees")


def t_startup_support(X, v, p):
    return (v("founded") >= p["founded_since"]) & (
        v("employees") >= p["min_employees"]
    ), lambda: p["grant"] + 0 * v("employees")


def t_tax_contribution(X, v, p):
    t, c = v("tax_paid"), v("credit_rating")
    return (t >= p["threshold"]) & ((c == "A") | (c == "B")), lambda: X.round_down(
        X.min(X.mul(t, p["share"]), p["cap"])
    )


def t_tea_purchase(X, v, p):
    kg = v("tea_kg_from_farmers")
    return (v("industry") == "tea") & (kg >= p["min_kg"]), lambda: X.min(
        X.mul(kg, p["per_kg"]), p["cap"]
    )


def t_training_subsidy(X, v, p):
    h = v("training_hours")
    return (v("trainees") >= p["min_trainees"]) & (h > 0), lambda: X.min(
        X.mul(h, p["per_hour"]), p["cap"]
    )


TEMPLATES = {name[2:]: f for name, f in globals().items() if name.startswith("t_")}

# ---- The table ----------------------------------------------------------------------------

KINDS = {
    "district": "text", "industry": "text", "credit_rating": "text",
    "founded": "date", "high_tech_since": "date",
    "small_business": "bool", "high_tech": "bool", "insurance_arrears": "bool",
    "first_listing": "bool",
    "revenue": "money", "revenue_prev": "money", "tax_paid": "money", "rd_expense": "money",
    "insurance_paid": "money", "rent_paid": "money", "exports": "money",
    "exports_prev": "money", "energy_saving_investment": "money",
    "equipment_investment": "money", "digital_investment": "money",
}


def load(path):
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    cols = {}
    for name in frame.columns:
        if name == "enterprise_id":
            continue
        cells = frame[name]
        kind = KINDS.get(name, "int")
        if kind == "text":
            cols[name] = cells.to_numpy(dtype=object)
        elif kind == "date":
            cols[name] = cells.to_numpy().astype("datetime64[D]")
        elif kind == "bool":
            cols[name] = (cells == "true").to_numpy()
        elif kind == "money":
            # Exact fen from the decimal text (never through a float): the generator
            # writes two decimals.
            assert cells.str.match(r"^-?\d+\.\d\d$").all(), name
            cols[name] = cells.str.replace(".", "", regex=False).astype(np.int64).to_numpy()
        else:
            cols[name] = cells.astype(np.int64).to_numpy()
    n = len(frame)
    del frame
    return n, cols


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples the resident set every 5 ms while a calculation runs."""

    def __enter__(self):
        import threading

        self.peak = rss_mb()
        self.base = self.peak
        self.stop = threading.Event()

        def sample():
            while not self.stop.wait(0.005):
                self.peak = max(self.peak, rss_mb())

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())


# ---- The exact reference ------------------------------------------------------------------

P = 2_147_483_647  # the checksum's modulus (2^31 - 1)


def checksum(amounts, eligible):
    rows = np.nonzero(eligible)[0]
    a = np.mod(amounts[rows].astype(np.int64), P)
    w = np.mod(rows.astype(np.int64) + 1, P)
    return int(np.sum(np.mod(a * w, P)) % P)


def reference(n, cols, policies):
    out = {}
    for pid, template, params in policies:
        p = {k: exact_value(x) for k, x in params.items()}
        elig, amount = TEMPLATES[template](Exact, cols.__getitem__, p)
        a = np.asarray(amount(), dtype=np.int64)
        a = np.broadcast_to(a, (n,))
        out[pid] = (elig, a)
    return out


# ---- OpenFisca ----------------------------------------------------------------------------


def openfisca_system(cols, policies):
    """The OpenFisca model: an Enterprise entity, an input variable per column, per policy an
    eligibility variable and an amount variable that reads it (the conditions are computed
    once: the amount formula takes the amount expression the eligibility formula left)."""
    from openfisca_core.entities import build_entity
    from openfisca_core.parameters import ParameterNode
    from openfisca_core.periods import DateUnit
    from openfisca_core.taxbenefitsystems import TaxBenefitSystem
    from openfisca_core.variables import Variable

    Enterprise = build_entity(
        key="enterprise", plural="enterprises", label="An enterprise", is_person=True
    )
    system = TaxBenefitSystem([Enterprise])
    # Money as OpenFisca floats in yuan: its int variables are int32, and revenues here
    # reach 4e9 fen, so integer fen would overflow (docs/benchmarks.md says so).
    value_types = {"text": str, "date": __import__("datetime").date, "bool": bool, "money": float}
    for name in cols:
        system.add_variable(
            type(
                name,
                (Variable,),
                {
                    "value_type": value_types.get(KINDS.get(name, "int"), int),
                    "entity": Enterprise,
                    "definition_period": DateUnit.YEAR,
                    "label": name,
                },
            )
        )
    tree = {}
    for pid, _template, params in policies:
        node = {}
        for k, x in params.items():
            fv = float_value(x)
            if isinstance(fv, np.datetime64):
                continue  # dates stay in the formula (OpenFisca parameters are numbers)
            node[k] = {"values": {"2025-01-01": fv}}
        tree[pid] = node
    system.parameters = ParameterNode("", data=tree)
    pending = {}

    def make(pid, template, dates, names):
        def params(parameters, period):
            node = getattr(parameters(period), pid)
            p = {k: node[k] for k in names}
            p.update(dates)
            return p

        def elig_formula(enterprise, period, parameters):
            p = params(parameters, period)
            elig, amount = TEMPLATES[template](Float, lambda c: enterprise(c, period), p)
            pending[pid] = amount
            return elig

        def amount_formula(enterprise, period, parameters):
            eligible = enterprise(pid + "_eligible", period)
            return np.where(eligible, pending.pop(pid)(), 0)

        for name, vt, f in ((pid + "_eligible", bool, elig_formula), (pid, float, amount_formula)):
            system.add_variable(
                type(
                    name,
                    (Variable,),
                    {
                        "value_type": vt,
                        "entity": Enterprise,
                        "definition_period": DateUnit.YEAR,
                        "label": name,
                        "formula": f,
                    },
                )
            )

    for pid, template, params in policies:
        dates = {k: exact_value(x) for k, x in params.items() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", x)}
        names = [k for k in params if k not in dates]
        make(pid, template, dates, names)
    return system


def openfisca_part(n, cols, policies, rows, ref, start, done):
    """One process's share: builds the simulation over `rows`, waits at `start`, calculates
    every policy, checks every amount against the exact reference, reports on `done`."""
    from openfisca_core.simulations import SimulationBuilder

    system = openfisca_system(cols, policies)
    part = {name: arr[rows] for name, arr in cols.items()}
    m = len(next(iter(part.values())))
    sim = SimulationBuilder().build_default_simulation(system, m)
    for name, arr in part.items():
        kind = KINDS.get(name, "int")
        sim.set_input(name, "2025", arr / 100 if kind == "money" else arr)
    start.wait()
    with PeakRss() as rss:
        started = time.perf_counter()
        results = {
            pid: (np.asarray(sim.calculate(pid + "_eligible", "2025")), np.asarray(sim.calculate(pid, "2025")))
            for pid, _t, _p in policies
        }
        seconds = time.perf_counter() - started
    off, wrong = {}, {}
    for pid, (elig, amount) in results.items():
        r_elig, r_amount = ref[pid][0][rows], ref[pid][1][rows]
        fen = np.rint(amount.astype(np.float64) * 100).astype(np.int64)
        off[pid] = [int(np.count_nonzero(r_elig & (np.abs(fen - r_amount) >= 1))), int(np.count_nonzero(r_elig))]
        wrong[pid] = int(np.count_nonzero(elig != r_elig))
    done.put({"seconds": seconds, "rss_before": rss.base, "rss_peak": rss.peak, "off": off, "wrong": wrong})


def openfisca(n, cols, policies, ref, processes):
    """OpenFisca over the whole table in `processes` processes (OpenFisca computes on one
    core; a second core is used the way its users would, by splitting the population). The
    time: from all simulations built to the last one done."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start, done = ctx.Barrier(processes + 1), ctx.Queue()
    bounds = np.linspace(0, n, processes + 1).astype(int)
    children = [ctx.Process(target=openfisca_part,
                            args=(n, cols, policies, slice(bounds[i], bounds[i + 1]), ref, start, done))
                for i in range(processes)]
    for c in children:
        c.start()
    start.wait()
    began = time.perf_counter()
    parts = [done.get() for _ in children]
    wall = time.perf_counter() - began
    for c in children:
        c.join()
    off, wrong = {}, {}
    for part in parts:
        for pid, (d, e) in part["off"].items():
            o = off.setdefault(pid, [0, 0])
            o[0] += d
            o[1] += e
        for pid, w in part["wrong"].items():
            wrong[pid] = wrong.get(pid, 0) + w
    return {
        "seconds": wall,
        "part_seconds": [round(p["seconds"], 3) for p in parts],
        "rss_before_mb": round(sum(p["rss_before"] for p in parts)),
        "rss_peak_mb": round(sum(p["rss_peak"] for p in parts)),
        "off_by_a_fen": {pid: o for pid, o in off.items() if o[0]},
        "eligibility_differences": {pid: w for pid, w in wrong.items() if w},
    }


def main():
    table, policy_dir, summary_path, out_path = sys.argv[1:5]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    policies = [
        parse_policy(os.path.join(policy_dir, f))
        for f in sorted(os.listdir(policy_dir))
        if f.endswith(".policy")
    ]
    n, cols = load(table)
    ours = {p["id"]: p for p in json.load(open(summary_path))["policies"]}

    ref = reference(n, cols, policies)
    mismatches = []
    for pid, (elig, amount) in ref.items():
        mine = ours[pid]
        want = {
            "eligible": int(np.count_nonzero(elig)),
            "asked_fen": int(amount[elig].sum()),
            "checksum": checksum(amount, elig),
        }
        got = {k: mine[k] for k in want}
        if got != want:
            mismatches.append({"policy": pid, "citybrain": got, "reference": want})

    # Median of `runs` for each process count, as for citybrain.
    by_processes = {}
    for processes in (1, 2):
        tries = [openfisca(n, cols, policies, ref, processes) for _ in range(runs)]
        tries.sort(key=lambda t: t["seconds"])
        median = tries[len(tries) // 2]
        median["all_seconds"] = [round(t["seconds"], 3) for t in tries]
        by_processes[processes] = median
    one = by_processes[1]
    json.dump(
        {
            "enterprises": n,
            "policies": len(policies),
            "citybrain_vs_reference_mismatches": mismatches,
            "openfisca_seconds": one["seconds"],
            "openfisca_seconds_1_process": one["seconds"],
            "openfisca_seconds_2_processes": by_processes[2]["seconds"],
            "openfisca_all_seconds": {str(k): v["all_seconds"] for k, v in by_processes.items()},
            "openfisca_rss_mb_before_calculation": one["rss_before_mb"],
            "openfisca_peak_rss_mb_during_calculation": one["rss_peak_mb"],
            "openfisca_peak_rss_mb_2_processes": by_processes[2]["rss_peak_mb"],
            "openfisca_amounts_off_by_a_fen": one["off_by_a_fen"],
            "openfisca_eligibility_differences": one["eligibility_differences"],
        },
        open(out_path, "w"),
        indent=1,
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
