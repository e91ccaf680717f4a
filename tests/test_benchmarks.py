"""The benchmark harnesses run end to end in quick mode (their numbers are not tested here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def run_benchmark(
    script: str, *args: str, out: Path, report: str = "*.json", timeout_s: float = 300
) -> Path:
    """Run ``benchmarks/<script>`` with ``args`` writing into ``out``; the one results file it
    wrote there, matching ``report``."""
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert r.returncode == 0, r.stderr
    (written,) = out.glob(report)
    return written


def test_device_benchmark_plans_every_size_on_every_usable_backend(tmp_path: Path) -> None:
    report = run_benchmark(
        "bench_device.py",
        *("--sizes", "3000x120,4000x160", "--iterations", "60", "--chains", "4"),
        out=tmp_path,
        report="*-device.json",
    )
    rows = json.loads(report.read_text())["rows"]
    assert [(row["n_points"], row["backend"]) for row in rows if row["backend"] == "cpu"] == [
        (3000, "cpu"),
        (4000, "cpu"),
    ]
    for row in rows:
        assert row["total_s"] >= row["matrix_s"] > 0 and row["seeds"] > 0
        assert 0 <= row["converged_iteration"] <= 60
    md = report.with_suffix(".md").read_text()
    assert "| cpu | 3000 x 120 |" in md and "GPU / CPU speed-up" in md


def test_the_clinical_comparison_plans_to_the_baselines_d90_and_organ_doses() -> None:
    """bench_plan judges "at equal or better D90, no organ worse" by planning with the
    baseline's D90 as the prescription and its organ values (plus the tolerance) as limits."""
    import copy

    sys.path.insert(0, str(BENCHMARKS))
    from bench_plan import compare, matched_spec, organ_tolerance_gy
    from test_planning import SMALL

    from seedopt.backend import cpu_backend
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import plan_case

    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    clinical = spec.model_copy(
        update={"optimizer": spec.optimizer.model_copy(update={"options": {}})}
    )
    base = plan_case(clinical, cpu_backend(), method="clinical", cache_dir=None).metrics
    matched = matched_spec(spec, base)
    d90 = base.structures["GTV"]["D90_gy"]
    assert matched.prescription_gy == max(spec.prescription_gy, d90)
    assert matched.goals.weights.organ_per_pct == 0.0
    cord = base.structures["Cord"]["D0.1cc_gy"]
    assert [(h.structure, h.metric, h.max_gy) for h in matched.goals.hard] == [
        ("Cord", "D0.1cc", min(45.0, cord + organ_tolerance_gy(cord))),
        (
            "Skin",
            "D2cc",
            min(70.0, (s := base.structures["Skin"]["D2cc_gy"]) + max(0.01 * s, 0.5)),
        ),
    ]

    def row(method: str, d90: float, seeds: int, v200: float, cord_gy: float) -> dict:
        return {
            "case": "c",
            "method": method,
            "D90_over_rx": d90,
            "seeds": seeds,
            "V200": v200,
            "oar_limits": {"Cord D0.1cc <= 45 Gy": cord_gy},
        }

    verdicts = compare(
        [
            row("clinical", 1.04, 20, 20.0, 30.0),
            row("hybrid@clinical", 1.04, 17, 19.0, 30.2),  # -15 % seeds, cord within 0.5 Gy
            row("clinical-strength", 1.00, 20, 20.0, 30.0),
            row("hybrid", 1.00, 19, 9.0, 31.0),  # V200 -11 points but the cord 1 Gy worse
        ]
    )
    assert [line.rsplit("|", 2)[-2].strip() for line in verdicts[-2:]] == ["met", "NOT met"]
    assert "Cord D0.1cc <= 45 Gy" in verdicts[-1]


def test_sweep_benchmark_plans_every_level_and_compares_with_separate_runs(tmp_path: Path) -> None:
    args = ["--levels", "3", "--iterations", "50", "--separate", "1", "--backend", "cpu"]
    report = run_benchmark("bench_sweep.py", *args, out=tmp_path, report="*-sweep.json")
    (row,) = json.loads(report.read_text())["rows"]
    assert row["levels"] == 3 and not row["measured_1000"] and row["sweep_s"] > 0
    assert [s["prescription_gy"] for s in row["separate"]] == [100.0]


def _cohort_modules():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_cohort
    import cohort

    return cohort, bench_cohort


def test_the_cohort_spans_the_published_series() -> None:
    """At least 20 cases, 2-600 cc with most between 20 and 60 cc, every site the issue
    names, prescriptions 100-160 Gy, 0.4-0.8 mCi, both approaches, some unreachable; each
    config validates and voxelises to its asked volume inside the body."""
    from seedopt.case import Case
    from seedopt.plan_config import PlanSpec

    cohort, bench = _cohort_modules()
    cases = cohort.COHORT
    assert len(cases) >= 20 and len({c.name for c in cases}) == len(cases)
    volumes = [c.volume_cc for c in cases]
    assert min(volumes) <= 2 and max(volumes) >= 600
    assert sum(20 <= v <= 60 for v in volumes) > len(cases) / 2
    assert {c.site for c in cases} == set(cohort.SITES)
    assert all(100 <= c.prescription_gy <= 160 and 0.4 <= c.activity_mci <= 0.8 for c in cases)
    assert {c.approach for c in cases} == {"template", "freehand"}
    assert any(not c.reachable for c in cases)
    assert {p["case"] for p in bench.PUBLISHED} <= {c.name for c in cases}
    for c in cases:
        spec = PlanSpec.model_validate(c.config())
        case = Case.from_spec(spec)
        assert case.volume_cc("GTV") == pytest.approx(c.volume_cc, rel=0.05), c.name
        assert not (case.masks["GTV"] & ~case.masks["BODY"]).any(), c.name


def test_the_gap_is_measured_from_the_best_bound_of_the_case() -> None:
    _, bench = _cohort_modules()
    rows = [
        {"case": "a", "method": "lp", "model_value": 50.0, "bounds": {"lp_relaxation": 30.0}},
        {
            "case": "a",
            "method": "milp",
            "model_value": 40.0,
            "bounds": {"lp_relaxation": 30.0, "milp_dual": 36.0},
        },
        {"case": "a", "method": "anneal", "model_value": float("inf")},
        {"case": "b", "method": "anneal", "model_value": 10.0},
    ]
    bench.add_gaps(rows)
    assert [r.get("gap_pct") for r in rows] == [
        pytest.approx(28.0),
        pytest.approx(10.0),
        None,
        None,
    ]
    assert rows[0]["best_bound"] == 36.0 and "best_bound" not in rows[3]


def test_the_cohort_benchmark_runs_every_method_and_repeats_its_numbers(tmp_path: Path) -> None:
    """The harness on the two tiny cases in quick mode, twice: every method on every case
    (lp and milp may refuse one: no plan as good as the rule's), the report and its plots,
    every score at or above the proven model bound, hybrid no worse than the rule's loading
    it starts from, and the same quality numbers on the second run."""
    from seedopt.backend import gpu_unavailable_reason

    _, bench = _cohort_modules()
    runs = []
    for k in range(2):
        report = run_benchmark(
            "bench_cohort.py", "--cases", "tiny", out=tmp_path / f"run{k}", timeout_s=600
        )
        runs.append(json.loads(report.read_text()))
    rows = runs[0]["rows"]
    assert [(r["case"], r["method"]) for r in rows] == [
        (case, m) for case in ("tiny_chest_wall", "tiny_vertebral") for m in bench.METHODS
    ]
    gpu = gpu_unavailable_reason()
    for r in rows:
        if r["method"] == "anneal-gpu" and gpu is not None:
            assert r["skipped"] == f"no GPU: {gpu}"
            continue
        if "refused" in r:
            assert r["method"] in ("lp", "milp") and "use method hybrid" in r["refused"], r
            continue
        assert r["goals_met"] and r["D90_over_rx"] >= 1.0 - 1e-6, r
        assert r["model_value"] >= r["best_bound"] * (1 - 1e-9) and r["gap_pct"] >= 0
        assert r["seeds"] > 0 and r["needles"] > 0 and r["seconds"] >= 0
    for case in ("tiny_chest_wall", "tiny_vertebral"):
        fun = {r["method"]: r["objective"] for r in rows if r["case"] == case and "objective" in r}
        assert fun["hybrid"] <= fun["clinical"] + 1e-9
    md = next((tmp_path / "run0").glob("*.md")).read_text()
    assert "## Every case" in md and "| tiny_vertebral | 3.1 | 110 | hybrid |" in md
    assert len(list((tmp_path / "run0").glob("*.png"))) == 3
    assert bench.quality(runs[1]["rows"]) == bench.quality(rows)


def test_a_child_keeps_its_rows_apart_from_what_native_code_prints(tmp_path: Path) -> None:
    """HiGHS prints some MIP diagnostics straight to file descriptor 1; a benchmark child
    writing its rows through ``rows_out`` still hands every row, and only rows, back."""
    sys.path.insert(0, str(BENCHMARKS))
    from _machine import run_child_rows

    child = tmp_path / "child.py"
    child.write_text(
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "from _machine import rows_out\n"
        "out = rows_out()\n"
        "for k in range(3):\n"
        "    os.write(1, b'HighsMipSolverData::transformNewIntegerFeasibleSolution\\n')\n"
        "    print('a Python print', flush=True)\n"
        "    print(json.dumps({'row': k}), file=out)\n"
    )
    rows, why = run_child_rows([sys.executable, str(child)], timeout_s=60)
    assert why is None
    assert rows == [{"row": 0}, {"row": 1}, {"row": 2}]


SMALL_HYBRID = {"effort": 0.05}
"""hybrid's options with a budget small enough for a test of the harness."""


def test_the_default_benchmark_judges_goals_1_and_3_from_its_rows(tmp_path: Path) -> None:
    """``--mode default`` on the tiny pair (smaller budgets): the rule, the default and every
    other method per case, the case's bound beside the rows (or why there is none), each
    plan's gap to it, and criteria whose numbers are the sums and medians of the rows."""
    import statistics

    _, bench = _cohort_modules()
    import default_report

    options = {
        "hybrid": SMALL_HYBRID,
        "anneal": {"chains": 4, "iterations": 300},
        "milp": {"node_limit": 5, "time_limit_s": 1.0},
    }
    report = run_benchmark(
        "bench_cohort.py",
        *("--mode", "default", "--cases", "tiny", "--options", json.dumps(options)),
        out=tmp_path,
        report="*-default.json",
    )
    data = json.loads(report.read_text())
    rows, bounds = data["rows"], data["bounds"]
    cases = ("tiny_chest_wall", "tiny_vertebral")
    assert [(r["case"], r["method"]) for r in rows] == [
        (c, m) for c in cases for m in ("clinical", "hybrid", "anneal", "lp", "milp")
    ]
    assert sorted(bounds) == list(cases)
    for r in rows:
        b = bounds[r["case"]]
        if "refused" in r:  # no plan as good as the rule's with these budgets
            assert r["method"] in ("lp", "milp") and "f_gap_pct" not in r, r
            continue
        if "unavailable" in b or b["objective_lb"] is None:
            assert r.get("f_gap_pct") is None
            continue
        assert r["objective"] >= b["objective_lb"] - 1e-9
        assert r["f_gap_pct"] == pytest.approx(
            100 * (r["objective"] - b["objective_lb"]) / r["objective"]
        )
    by = {(r["case"], r["method"]): r for r in rows}
    needles, seeds, v150, v200, organ, met, broken = default_report.goal1(rows)
    assert needles.values["default"] == sum(by[c, "hybrid"]["needles"] for c in cases)
    assert needles.values["rule"] == sum(by[c, "clinical"]["needles"] for c in cases)
    assert needles.passed == (needles.values["ratio"] <= 0.75)
    assert seeds.values["default"] == sum(by[c, "hybrid"]["seeds"] for c in cases)
    assert seeds.passed == (seeds.values["default"] <= 0.95 * seeds.values["rule"])
    assert v200.values["rule"] == statistics.median(by[c, "clinical"]["V200"] for c in cases)
    assert met.values == {"met": sum(by[c, "hybrid"]["goals_met"] for c in cases), "cases": 2}
    median, largest = default_report.goal3(rows)
    assert median.values["median_s"] == statistics.median(by[c, "hybrid"]["seconds"] for c in cases)
    assert largest.passed is None  # trunk_sarcoma_600 is not in the run
    md = report.with_suffix(".md").read_text()
    for criterion in (needles, seeds, v150, v200, organ, met, broken, median, largest):
        assert criterion.line() in md
    assert "## Every case against the rule" in md and "| tiny_vertebral | 3.1 | hybrid |" in md


def test_goal_1_compares_organs_where_the_rule_meets_a_limit_and_skips_refusals() -> None:
    """Organ metrics count against the default only above the rule's + 1 Gy and only on
    limits the rule meets; a limit the rule breaks binds the default once another method
    meets it; a refused row is no plan; gaps are measured to the case's bound."""
    _, bench = _cohort_modules()
    import default_report

    def plan(method: str, cord: float, skin: float, **kw: object) -> dict:
        limits = [
            {"name": "Cord D0.1cc <= 45 Gy", "value": cord, "limit": 45, "met": cord <= 45},
            {"name": "Skin D2cc <= 70 Gy", "value": skin, "limit": 70, "met": skin <= 70},
        ]
        row = {"case": "a", "method": method, "reachable": True, "asked_cc": 10.0}
        planned = {"D90_over_rx": 1.0, "rx_shortfall_pct": 0.0, "limits": limits, "needles": 10}
        planned |= {"seeds": 20, "seed_needle_cost": 2.0}
        return row | planned | {"V150": 50.0, "seconds": 1.0, "time_limited": False} | kw

    rows = [
        plan("clinical", 30.0, 75.0, V200=20.0, goals_met=False, objective=5.0),
        plan("hybrid", 31.5, 72.0, V200=15.0, goals_met=False, objective=4.0),
        plan("anneal", 30.0, 69.0, V200=15.0, goals_met=True, objective=4.5),
        {"case": "a", "method": "milp", "reachable": True, "asked_cc": 10.0, "refused": "use lp"},
    ]
    *_, organ, met, broken = default_report.goal1(rows)
    assert organ.values == {"compared": 1, "above": 1} and organ.passed is False
    assert "a Cord D0.1cc +1.5 Gy" in organ.measured and met.passed is False
    assert broken.values == {"judged": 1, "failed": 1} and "met by anneal" in broken.measured
    rows[1]["limits"][0]["value"] = 30.9  # within 1 Gy of the rule
    rows[1]["limits"][1].update(value=70.0, met=True)
    *_, organ, met, broken = default_report.goal1(rows)
    assert organ.passed and broken.passed
    rows[2]["rx_shortfall_pct"] = 0.5  # below Rx: outside what the seed and needle bound covers
    bench.add_bound_gaps(rows, {"a": {"objective_lb": 3.0, "seed_needle_lb": 1.5}})
    assert [r.get("f_gap_pct") for r in rows] == [40.0, 25.0, pytest.approx(100 / 3), None]
    assert [r.get("seed_needle_gap_pct") for r in rows] == [25.0, 25.0, None, None]
    assert "| a | 10.0 | milp | refused: use lp |" in "\n".join(default_report.every_case(rows))


def test_the_convergence_study_judges_the_default_against_its_long_runs(tmp_path: Path) -> None:
    """bench_convergence on the tiny pair: per case the default (seeds 0 and 1) and the long
    runs (seeds 0 and 1), each with a trace of f against time; per case the criterion at
    every default seed (within max(1 %, 0.5) of the best long f), per default seed the count
    of cases within, and one figure."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_convergence

    report = run_benchmark(
        "bench_convergence.py",
        *("--cases", "tiny", "--effort", "2", "--seeds", "2", "--default-seeds", "2"),
        *("--options", json.dumps(SMALL_HYBRID)),
        out=tmp_path,
        report="*-convergence.json",
    )
    data = json.loads(report.read_text())
    rows = data["rows"]
    cases = ("tiny_chest_wall", "tiny_vertebral")
    assert [(r["case"], r["run"], r["seed"]) for r in rows] == [
        (c, run, seed) for c in cases for run in ("default", "long") for seed in (0, 1)
    ]
    for r in rows:
        assert len(r["trace_s"]) == len(r["trace_f"]) >= 1 and r["trace_f"][-1] == r["fun"]
        assert r["options"]["effort"] == (0.1 if r["run"] == "long" else 0.05)
    f = {(r["case"], r["run"], r["seed"]): r["fun"] for r in rows}
    best = {c: min(f[c, "long", 0], f[c, "long", 1]) for c in cases}
    within = {
        (c, s): f[c, "default", s] - best[c] <= max(0.01 * abs(best[c]), 0.5)
        for c in cases
        for s in (0, 1)
    }
    per_case = bench_convergence.case_criteria(rows)
    for criterion, c in zip(per_case, cases, strict=True):
        assert criterion.values["best_f"] == best[c]
        assert criterion.passed == (within[c, 0] and within[c, 1])
    per_seed = bench_convergence.seed_criteria(rows)
    for criterion, s in zip(per_seed, (0, 1), strict=True):
        assert criterion.values["within"] == sum(within[c, s] for c in cases)
        assert criterion.passed is None  # two cases of one size: not enough to judge goal 2
    overall = bench_convergence.overall(per_seed)
    assert overall.passed is None
    md = report.with_suffix(".md").read_text()
    assert all(c.line() in md for c in (*per_case, *per_seed, overall))
    assert report.with_suffix(".png").exists()


def test_goal_2_needs_six_sizes_within_at_every_default_seed() -> None:
    """Seven cases of seven sizes, the long runs' best f 10 on each: the default at seed 0 is
    within (tolerance 0.5) on six of them, at seed 1 on five; goal 2 then fails, and passes
    once seed 1 is within on a sixth case. A case is within only if every seed is."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_convergence

    def rows(seed1_out: int) -> list[dict]:
        out = []
        for i in range(7):
            base = {"case": f"c{i}", "asked_cc": 10 * (i + 1), "n_candidates": 9, "seconds": 1}
            out.append({**base, "run": "long", "seed": 0, "fun": 10.0})
            out.append({**base, "run": "default", "seed": 0, "fun": 10.6 if i == 6 else 10.4})
            out.append(
                {**base, "run": "default", "seed": 1, "fun": 10.6 if i >= seed1_out else 10.5}
            )
        return out

    failing = rows(seed1_out=5)
    assert [c.passed for c in bench_convergence.case_criteria(failing)] == [True] * 5 + [False] * 2
    per_seed = bench_convergence.seed_criteria(failing)
    assert [(c.values["within"], c.passed) for c in per_seed] == [(6, True), (5, False)]
    assert bench_convergence.overall(per_seed).passed is False
    per_seed = bench_convergence.seed_criteria(rows(seed1_out=6))
    assert bench_convergence.overall(per_seed).passed is True
