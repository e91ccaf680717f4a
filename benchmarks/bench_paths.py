"""What the CT path rules change: the candidates of the two CT cases of ``tests/test_paths.py``
(the synthetic water cylinder with a bone block and an air pocket beside the GTV, and the DICOM
sample's neck slice repeated on 15 planes) built with and without the CT keep-outs, each set
checked by the tests' independent sampler (the CT read back with pydicom, the 3 mm ball round
every point of each needle sampled on a 0.5 mm lattice).

    .venv/bin/python benchmarks/bench_paths.py

Prints, per case: the time to build the case and the candidates (best of 3), the needles kept,
the lines traced, and how many needles come within 3 mm of bone or air in the body.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_paths as tp  # noqa: E402

from seedopt.candidates import build_candidates  # noqa: E402
from seedopt.pipeline import load_case  # noqa: E402
from seedopt.plan_config import load_plan_spec  # noqa: E402


def measure(name: str, cfg: Path) -> None:
    spec = load_plan_spec(cfg)
    t = time.perf_counter()
    case, _ = load_case(spec)
    case_s = time.perf_counter() - t
    ct = tp.read_ct(cfg.parent / "ct")
    for label, c in (("CT rules", case), ("no CT rules", dataclasses.replace(case, ct=None))):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            cands = build_candidates(c, spec.approach)
            times.append(time.perf_counter() - t)
        bad = sum(tp.offending(n.entry_mm, n.tip_mm, ct) != (0, 0) for n in cands.needles)
        print(
            f"{name:10} {label:12} case {case_s:5.2f} s  candidates {min(times):6.3f} s  "
            f"{cands.n_needles:3d} needles of {cands.lines_traced:5d} lines  "
            f"{bad:3d} within 3 mm of bone or air"
        )


def main() -> None:
    print(f"# {platform.node()}, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        measure("synthetic", tp.synthetic(root, (tp.BONE_BLOCK, tp.AIR_POCKET)))
        (root / "sample").mkdir()
        measure("sample", tp.sample_neck_case(root / "sample"))


if __name__ == "__main__":
    main()
