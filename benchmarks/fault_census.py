"""Census of bad input and faults over every command: how each case ends.

Each case runs one ``seedopt`` command in a subprocess on files this script writes, and is
classed by how it ended:

* ``error``: exit code 2 with one ``seedopt: error: ...`` line and no traceback;
* ``accepted``: exit code 0 or 3 (a result was computed and written);
* ``traceback``: a Python traceback, an exit code other than 0, 2, 3 or a signal (a crash);
* ``hang``: still running after ``--timeout-s``.

Every case states what a careful tool does with it: ``refuse`` (the input is wrong or
ambiguous: anything but ``error`` is a failure, and ``accepted`` is a silently wrong result)
or ``accept`` (valid input a user may well give: a BOM, a missing output parent; it must be
``accepted``, and where the case has a check, give the same numbers as the plain input).

    python benchmarks/fault_census.py                       # the installed seedopt
    python benchmarks/fault_census.py --python OLD/bin/python --label before

writes ``benchmarks/results/<date>-<machine>-census[-LABEL].{json,md}``. Run it with two
interpreters (an old checkout's venv and this one) for a before / after table.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from _machine import machine, result_stem

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "dicom" / "dicompyler_breast"

SMALL = {
    "name": "small",
    "description": "a 4 cc target under the skin, cord below",
    "grid": {"spacing_mm": 2.0, "min_mm": [-24, -30, -20], "max_mm": [24, 24, 20]},
    "structures": {
        "BODY": {"shape": "cylinder", "center_mm": [0, 0, 0], "radii_mm": [80, 26], "axis": "z"},
        "GTV": {"shape": "ellipsoid", "center_mm": [0, -8, 0], "radii_mm": [10, 9, 11]},
        "Cord": {"shape": "cylinder", "center_mm": [0, 16, 0], "radii_mm": [4, 4], "axis": "z"},
    },
    "roles": {"target": "GTV", "body": "BODY", "cord": "Cord", "nogo": ["Cord"]},
    "source": {"model": "6711", "activity_mci": 0.5},
    "prescription_gy": 120,
    "approach": {
        "kind": "template",
        "plane_point_mm": [0, -40, 0],
        "direction": [0, 1, 0],
        "size_mm": 40,
    },
    "optimizer": {"method": "clinical"},
}
SEEDS = "x_mm,y_mm,z_mm\n0,-8,0\n5,-8,0\n0,-8,5\n"
POINTS = "x_mm,y_mm,z_mm\n0,-8,10\n10,-8,0\n"


@dataclass(frozen=True)
class Case:
    """One bad-input or fault case: its class, what it is, what a careful tool does, and how
    to make it (``make(work) -> argv`` after ``seedopt``). ``prepare(work, seedopt)`` runs
    first where a case needs earlier runs (``seedopt(argv)`` runs the command under test);
    ``check(work)`` of an accepted result returns why it is wrong, or None."""

    kind: str
    name: str
    expect: str  # "refuse" or "accept"
    make: Callable[[Path], list[str]]
    prepare: Callable[[Path, Callable[[list[str]], None]], None] | None = None
    check: Callable[[Path], str | None] | None = None


def config(work: Path, name: str, change: Callable[[dict], None] | None = None) -> Path:
    """The small plan config, changed by ``change``, written as YAML."""
    data = copy.deepcopy(SMALL)
    if change is not None:
        change(data)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def text(work: Path, name: str, content: str | bytes) -> Path:
    path = work / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def plan_args(path: Path, work: Path, *extra: str) -> list[str]:
    return [
        "plan",
        str(path),
        "--out",
        str(work / f"out-{path.stem}"),
        "--no-cache",
        "--backend",
        "cpu",
        *extra,
    ]


def dose_args(work: Path, seeds: Path, points: Path | None = None) -> list[str]:
    points = points or text(work, "points.csv", POINTS)
    return [
        "dose",
        "--model",
        "6711",
        "--strength-u",
        "0.5",
        "--seeds",
        str(seeds),
        "--points",
        str(points),
        "--backend",
        "cpu",
    ]


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A change setting the dotted key ``path`` of the config to ``value``."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def yaml_cases() -> list[Case]:
    def raw(name: str, body: str | bytes) -> Callable[[Path], list[str]]:
        return lambda w: plan_args(text(w, f"{name}.yaml", body), w)

    base = yaml.safe_dump(SMALL, sort_keys=False)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    return [
        Case("config", "duplicate key", "refuse", raw("dup", base + "prescription_gy: 60\n")),
        Case(
            "config",
            "boolean prescription",
            "refuse",
            lambda w: plan_args(config(w, "bool", _set("prescription_gy", True)), w),
        ),
        Case(
            "config",
            "NaN in grid bounds",
            "refuse",
            lambda w: plan_args(
                config(w, "nangrid", _set("grid.min_mm", [float("nan"), -30, -20])), w
            ),
        ),
        Case(
            "config",
            "infinite prescription",
            "refuse",
            lambda w: plan_args(config(w, "infrx", _set("prescription_gy", float("inf"))), w),
        ),
        Case(
            "config",
            "coordinates of 1e308",
            "refuse",
            lambda w: plan_args(config(w, "huge", _set("grid.max_mm", [1e308, 24, 20])), w),
        ),
        Case(
            "config",
            "NaN target margin",
            "refuse",
            lambda w: plan_args(config(w, "nanmargin", _set("target_margin_mm", float("nan"))), w),
        ),
        Case("config", "alias bomb", "refuse", raw("bomb", bomb)),
        Case(
            "config",
            "not UTF-8 (Latin-1 comment)",
            "refuse",
            raw("latin1", ("# d\xe9j\xe0 vu\n" + base).encode("latin-1")),
        ),
        Case("config", "UTF-8 byte-order mark", "accept", raw("bom", "\ufeff" + base)),
        Case("config", "not a mapping", "refuse", raw("list", "- 1\n- 2\n")),
        Case("config", "empty file", "refuse", raw("empty", "")),
    ]


def option_cases() -> list[Case]:
    def anneal(name: str, options: dict) -> Callable[[Path], list[str]]:
        return lambda w: plan_args(
            config(w, name, _set("optimizer", {"method": "anneal", "options": options})), w
        )

    return [
        Case("options", "unknown option", "refuse", anneal("typo", {"chain": 4})),
        Case("options", "chains 0", "refuse", anneal("chains0", {"chains": 0})),
        Case("options", "iterations 0", "refuse", anneal("it0", {"iterations": 0})),
        Case("options", "iterations negative", "refuse", anneal("itneg", {"iterations": -5})),
        Case("options", "t0 0", "refuse", anneal("t0", {"t0": 0})),
        Case("options", "p_shift 2", "refuse", anneal("pshift", {"p_shift": 2})),
        Case(
            "options",
            "unknown method",
            "refuse",
            lambda w: plan_args(config(w, "meth", _set("optimizer.method", "anealing")), w),
        ),
        Case(
            "options",
            "negative --seed",
            "refuse",
            lambda w: plan_args(config(w, "seedneg"), w, "--seed", "-3"),
        ),
    ]


def csv_cases() -> list[Case]:
    def seeds(name: str, body: str | bytes) -> Callable[[Path], list[str]]:
        return lambda w: dose_args(w, text(w, name, body))

    return [
        Case(
            "csv", "duplicate column", "refuse", seeds("dup.csv", "x_mm,y_mm,z_mm,x_mm\n0,0,0,5\n")
        ),
        Case(
            "csv",
            "direction columns in part (ux,uy)",
            "refuse",
            seeds("part.csv", "x_mm,y_mm,z_mm,ux,uy\n0,0,0,1,0\n"),
        ),
        Case(
            "csv",
            "semicolons and decimal commas",
            "refuse",
            seeds("semi.csv", "x_mm;y_mm;z_mm\n0,5;0;0\n"),
        ),
        Case("csv", "UTF-8 byte-order mark", "accept", seeds("bom.csv", "\ufeff" + SEEDS)),
        Case(
            "csv",
            "not UTF-8",
            "refuse",
            seeds("latin.csv", "x_mm,y_mm,z_mm\n0,0,0\n\xe9,0,0\n".encode("latin-1")),
        ),
        Case("csv", "coordinate 1e308", "refuse", seeds("huge.csv", "x_mm,y_mm,z_mm\n1e308,0,0\n")),
        Case("csv", "NaN coordinate", "refuse", seeds("nan.csv", "x_mm,y_mm,z_mm\nnan,0,0\n")),
        Case(
            "csv",
            "zero-length direction",
            "refuse",
            seeds("zero.csv", "x_mm,y_mm,z_mm,ux,uy,uz\n0,0,0,0,0,0\n"),
        ),
        Case("csv", "header only", "refuse", seeds("hdr.csv", "x_mm,y_mm,z_mm\n")),
        Case("csv", "ragged row", "refuse", seeds("ragged.csv", "x_mm,y_mm,z_mm\n0,0\n")),
    ]


def output_cases() -> list[Case]:
    def under_file(w: Path) -> list[str]:
        blocker = text(w, "blocker", "a file")
        return [
            "plan",
            str(config(w, "uf")),
            "--out",
            str(blocker / "out"),
            "--no-cache",
            "--backend",
            "cpu",
        ]

    def cache_under_file(w: Path) -> list[str]:
        blocker = text(w, "cache-blocker", "a file")
        return [
            "plan",
            str(config(w, "cf")),
            "--out",
            str(w / "out-cf"),
            "--cache",
            str(blocker / "cache"),
            "--backend",
            "cpu",
        ]

    return [
        Case("outputs", "--out under a regular file", "refuse", under_file),
        Case(
            "outputs",
            "--out not writable (/proc)",
            "refuse",
            lambda w: [
                "plan",
                str(config(w, "proc")),
                "--out",
                "/proc/seedopt-out",
                "--no-cache",
                "--backend",
                "cpu",
            ],
        ),
        Case(
            "outputs",
            "--out with missing parents",
            "accept",
            lambda w: [
                "plan",
                str(config(w, "mp")),
                "--out",
                str(w / "a" / "b" / "c"),
                "--no-cache",
                "--backend",
                "cpu",
            ],
        ),
        Case(
            "outputs",
            "cache folder under a regular file (plan still written)",
            "accept",
            cache_under_file,
        ),
        Case(
            "outputs",
            "dose --out under a regular file",
            "refuse",
            lambda w: [
                *dose_args(w, text(w, "s.csv", SEEDS)),
                "--out",
                str(text(w, "blocker2", "x") / "d.csv"),
            ],
        ),
    ]


def _rtplan(w: Path) -> tuple[Path, Path]:
    """The DICOM sample's config and an exported seed RT Plan (made once per census)."""
    return w / "sample" / "case.yaml", w / "sample" / "plan" / "rtplan.dcm"


def init_case_args(rtstruct: Path, out: Path) -> list[str]:
    """``init-case`` of a structure set with the sample's target at 120 Gy."""
    return ["init-case", "--rtstruct", str(rtstruct), "--target", "tumor bed", "--rx", "120",
            "--out", str(out)]  # fmt: skip


def dicom_cases() -> list[Case]:
    def edited(name: str, edit: Callable[[object], None]) -> Callable[[Path], list[str]]:
        def make(w: Path) -> list[str]:
            import pydicom

            ds = pydicom.dcmread(SAMPLE / "rtss.dcm")
            edit(ds)
            path = w / f"{name}.dcm"
            ds.save_as(path)
            return init_case_args(path, w / f"{name}.yaml")

        return make

    def duplicate_name(ds) -> None:  # noqa: ANN001
        roi = next(r for r in ds.StructureSetROISequence if r.ROIName == "Heart")
        roi.ROIName = "Tumor Bed"

    def target_item(ds):  # noqa: ANN001, ANN202
        """The ROI Contour item of the target (Tumor Bed)."""
        number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == "Tumor Bed")
        return next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == number)

    def no_contour_data(ds) -> None:  # noqa: ANN001
        del target_item(ds).ContourSequence[0].ContourData

    def not_triples(ds) -> None:  # noqa: ANN001
        c = target_item(ds).ContourSequence[0]
        c.ContourData = list(c.ContourData)[:-1]

    def nan_point(ds) -> None:  # noqa: ANN001
        c = target_item(ds).ContourSequence[0]
        c.ContourData = ["nan", *list(c.ContourData)[1:]]

    def no_roi_number(ds) -> None:  # noqa: ANN001
        del target_item(ds).ReferencedROINumber

    def truncated_plan(cut: float) -> Callable[[Path], list[str]]:
        def make(w: Path) -> list[str]:
            cfg, plan = _rtplan(w.parent)  # made once in the census folder
            data = plan.read_bytes()
            path = text(w, f"cut{cut}.dcm", data[: int(len(data) * cut)])
            return [
                "evaluate",
                str(cfg),
                "--seeds",
                str(path),
                "--out",
                str(w / f"post-cut{cut}"),
                "--backend",
                "cpu",
            ]

        return make

    def truncated_rtstruct(w: Path) -> list[str]:
        data = (SAMPLE / "rtss.dcm").read_bytes()
        path = text(w, "rtss-cut.dcm", data[: len(data) * 2 // 3])
        return init_case_args(path, w / "cut.yaml")

    return [
        Case("dicom", "two ROIs of the target's name", "refuse", edited("dup", duplicate_name)),
        Case("dicom", "contour without ContourData", "refuse", edited("nocd", no_contour_data)),
        Case("dicom", "ContourData not a multiple of 3", "refuse", edited("tri", not_triples)),
        Case("dicom", "NaN contour point", "refuse", edited("nanpt", nan_point)),
        Case(
            "dicom",
            "ROI contour without ReferencedROINumber",
            "refuse",
            edited("noref", no_roi_number),
        ),
        Case("dicom", "structure set cut at 2/3", "refuse", truncated_rtstruct),
        *[
            Case("dicom", f"seed RT Plan cut at {cut:.0%}", "refuse", truncated_plan(cut))
            for cut in (0.5, 0.7, 0.9)
        ],
    ]


def study_cases() -> list[Case]:
    def bad_metrics(w: Path) -> list[str]:
        pre = w / "pre"
        pre.mkdir(exist_ok=True)
        text(pre, "metrics.json", json.dumps({"structures": [1, 2]}))
        cfg = config(w, "ev")
        return [
            "evaluate",
            str(cfg),
            "--seeds",
            str(text(w, "ev.csv", SEEDS)),
            "--out",
            str(w / "post-ev"),
            "--plan",
            str(pre),
            "--backend",
            "cpu",
        ]

    def same_key(w: Path) -> list[str]:
        a = config(w, "a", _set("name", "case a"))
        b = config(w, "b", _set("name", "case/a"))  # both become the key case-a
        return [
            "batch",
            str(a),
            str(b),
            "--out",
            str(w / "keys.h5"),
            "--workers",
            "1",
            "--backend",
            "cpu",
        ]

    def corrupt_db(w: Path) -> list[str]:
        out = w / "tune-corrupt"
        out.mkdir(exist_ok=True)
        (out / "tune.db").write_bytes(bytes(range(256)) * 64)
        return [
            "tune",
            str(config(w, "tn")),
            "--out",
            str(out),
            "--trials",
            "1",
            "--backend",
            "cpu",
        ]

    return [
        Case("studies", "evaluate --plan metrics of another shape", "refuse", bad_metrics),
        Case("studies", "two batch case names of one key", "refuse", same_key),
        Case(
            "studies",
            "tune: storage URL of an unknown dialect",
            "refuse",
            lambda w: [
                "tune",
                str(config(w, "tu")),
                "--out",
                str(w / "tune-url"),
                "--storage",
                "nosuchdb://x",
                "--trials",
                "1",
                "--backend",
                "cpu",
            ],
        ),
        Case("studies", "tune: corrupt study database", "refuse", corrupt_db),
        Case(
            "studies",
            "batch --address of a cluster that does not answer",
            "refuse",
            lambda w: [
                "batch",
                str(config(w, "addr")),
                "--out",
                str(w / "addr.h5"),
                "--address",
                "127.0.0.1:9",
                "--backend",
                "cpu",
            ],  # fmt: skip
        ),
        Case(
            "studies",
            "escalate --rx with NaN",
            "refuse",
            lambda w: [
                "escalate",
                str(config(w, "es")),
                "--rx",
                "nan,120",
                "--out",
                str(w / "esc"),
                "--backend",
                "cpu",
            ],
        ),
        Case(
            "studies",
            "batch variants file not UTF-8",
            "refuse",
            lambda w: [
                "batch",
                str(config(w, "bv")),
                "--variants",
                str(text(w, "v.yaml", "base: {}\n# \xe9\n".encode("latin-1"))),
                "--out",
                str(w / "bv.h5"),
                "--workers",
                "1",
                "--backend",
                "cpu",
            ],
        ),
    ]


def cache_cases() -> list[Case]:
    """A damaged dose-matrix cache entry: the plan must equal the undamaged run's."""

    def plan_with_cache(w: Path, out: str) -> list[str]:
        return ["plan", str(config(w, "cached")), "--out", str(w / out), "--cache",
                str(w / "cache"), "--backend", "cpu"]  # fmt: skip

    def damaged(how: str, damage: Callable[[Path], None]) -> Case:
        def prepare(w: Path, seedopt: Callable[[list[str]], None]) -> None:
            seedopt(plan_with_cache(w, "out-ref"))
            for entry in (w / "cache").glob("*.h5"):
                damage(entry)

        def check(w: Path) -> str | None:
            ref, new = (
                json.loads((w / o / "metrics.json").read_text()) for o in ("out-ref", "out")
            )
            a, b = (m["structures"][m["target"]]["D90_gy"] for m in (ref, new))
            return None if abs(a - b) <= 1e-6 * abs(a) else f"D90 {b:.2f} Gy, undamaged {a:.2f} Gy"

        return Case("cache", f"cache entry {how}", "accept", lambda w: plan_with_cache(w, "out"),
                    prepare, check)  # fmt: skip

    def scaled(entry: Path) -> None:
        import h5py

        with h5py.File(entry, "r+") as f:
            f["A_gy_per_u"][...] = f["A_gy_per_u"][...] * 0.5

    def nan(entry: Path) -> None:
        import h5py

        with h5py.File(entry, "r+") as f:
            row = f["A_gy_per_u"][0]
            row[0] = float("nan")
            f["A_gy_per_u"][0] = row

    def truncated(entry: Path) -> None:
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2])

    def random_bytes(entry: Path) -> None:
        import numpy as np

        entry.write_bytes(np.random.default_rng(0).bytes(entry.stat().st_size))

    return [
        damaged("scaled by 0.5", scaled),
        damaged("with a NaN", nan),
        damaged("truncated", truncated),
        damaged("overwritten by random bytes", random_bytes),
    ]


CASES = [
    *yaml_cases(),
    *option_cases(),
    *csv_cases(),
    *output_cases(),
    *dicom_cases(),
    *study_cases(),
    *cache_cases(),
]


def classify(rc: int | None, stderr: str) -> str:
    """``error``, ``accepted``, ``traceback`` or ``hang`` (``rc`` None: timed out)."""
    if rc is None:
        return "hang"
    errors = [ln for ln in stderr.splitlines() if ln.startswith("seedopt: error:")]
    if "Traceback" in stderr or rc not in (0, 2, 3):
        return "traceback"
    if rc == 2 and len(errors) == 1:
        return "error"
    return "accepted" if rc in (0, 3) else "traceback"


def verdict(case: Case, outcome: str, wrong: str | None) -> str:
    """``ok`` or what went wrong: ``silent`` (a wrong input accepted, or an accepted result
    ``wrong`` by the case's check), ``refused`` (a valid input refused), ``traceback``,
    ``hang``."""
    want = "error" if case.expect == "refuse" else "accepted"
    if outcome == want:
        return "ok" if wrong is None else "silent"
    if outcome in ("traceback", "hang"):
        return outcome
    return "silent" if case.expect == "refuse" else "refused"


def run(python: str, argv: list[str], timeout_s: float, cwd: Path) -> tuple[int | None, str, float]:
    """``python -m seedopt ARGV`` in ``cwd`` (outside any checkout: ``-m`` imports from the
    current folder first): exit code (None: timed out), stderr and seconds."""
    start = time.perf_counter()
    try:
        r = subprocess.run(
            [python, "-m", "seedopt", *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            errors="replace",
            cwd=cwd,
        )
        return r.returncode, r.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return None, err or "", time.perf_counter() - start


def prepare_sample(python: str, work: Path) -> None:
    """init-case and a clinical plan of the DICOM sample: the RT Plan the cut cases cut."""
    (work / "sample").mkdir(exist_ok=True)
    cfg, plan = _rtplan(work)
    steps = [
        ["init-case", "--rtstruct", str(SAMPLE / "rtss.dcm"), "--target", "tumor bed",
         "--rx", "120", "--out", str(cfg)],
        ["plan", str(cfg), "--out", str(plan.parent), "--method", "clinical", "--no-cache",
         "--backend", "cpu"],
    ]  # fmt: skip
    for argv in steps:
        rc, stderr, _ = run(python, argv, 600, work)
        if rc not in (0, 3):
            sys.exit(f"census: {argv[0]} of the DICOM sample failed: {stderr[-2000:]}")


def census(python: str, work: Path, timeout_s: float, kinds: set[str]) -> list[dict]:
    prepare_sample(python, work)
    rows = []
    for k, case in enumerate(CASES):
        if kinds and case.kind not in kinds:
            continue
        case_dir = work / f"case{k:03d}"
        case_dir.mkdir()

        def seedopt(argv: list[str], case_dir: Path = case_dir) -> None:
            rc, stderr, _ = run(python, argv, timeout_s, case_dir)
            if rc not in (0, 3):
                sys.exit(f"census: a preparing run failed: {argv}: {stderr[-2000:]}")

        if case.prepare is not None:
            case.prepare(case_dir, seedopt)
        argv = case.make(case_dir)
        rc, stderr, seconds = run(python, argv, timeout_s, case_dir)
        outcome = classify(rc, stderr)
        wrong = case.check(case_dir) if case.check and outcome == "accepted" else None
        last = wrong or next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        row = {
            "kind": case.kind,
            "case": case.name,
            "expect": case.expect,
            "command": argv[0],
            "rc": rc,
            "outcome": outcome,
            "verdict": verdict(case, outcome, wrong),
            "seconds": round(seconds, 2),
            "last_line": last[:300],
        }
        rows.append(row)
        print(f"{case.kind:8} {case.name:48} {outcome:9} {row['verdict']}", flush=True)
    return rows


def markdown(rows: list[dict], python: str, label: str, command: str) -> str:
    by_kind: dict[str, Counter] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], Counter())[r["verdict"]] += 1
    total = Counter(r["verdict"] for r in rows)
    cols = ["ok", "silent", "refused", "traceback", "hang"]
    m = machine()
    lines = [
        f"# Fault census{f' ({label})' if label else ''}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['date']}.",
        f"Interpreter: `{python}`. Command: `{command}`.",
        "",
        "| class | cases | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for kind, c in [*by_kind.items(), ("all", total)]:
        lines.append(
            f"| {kind} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in cols) + " |"
        )
    lines += [
        "",
        "silent: a wrong input accepted (a result computed from it); refused: a valid "
        "input refused.",
        "",
        "| class | case | expect | outcome | verdict | last line |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        last = r["last_line"].replace("|", "\\|")
        lines.append(
            f"| {r['kind']} | {r['case']} | {r['expect']} | {r['outcome']} | "
            f"{r['verdict']} | {last} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter with seedopt")
    ap.add_argument("--label", default="", help="suffix of the result files (e.g. before)")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="a case past this hangs")
    ap.add_argument("--kinds", default="", help="comma-separated classes (default: all)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = census(args.python, work, args.timeout_s, set(filter(None, args.kinds.split(","))))
    out = result_stem("census" + (f"-{args.label}" if args.label else ""))
    command = "python benchmarks/fault_census.py " + " ".join(sys.argv[1:])
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "python": args.python,
                "label": args.label,
                "command": command,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    out.with_suffix(".md").write_text(markdown(rows, args.python, args.label, command))
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
