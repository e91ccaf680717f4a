"""One assembly path: ``pipeline.prepare`` builds case, candidates, source and problem for
every caller; DICOM is read once, in the pipeline, never by the case layer."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dicom_series import phantom_rois, write_ct, write_rtstruct
from pydicom.uid import generate_uid
from test_planning import SMALL

from seedopt.backend import cpu_backend
from seedopt.pipeline import PreparedCase, prepare
from seedopt.plan_config import PlanSpec, load_plan_spec

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside functions (relative ones resolved
    against the ``seedopt`` package the file belongs to)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else node.module
            names.add(module or base)
    return names


def test_no_module_of_the_case_layer_imports_dicom() -> None:
    files = sorted((ROOT / "seedopt" / "case").glob("*.py"))
    assert files
    for path in files:
        assert not {m for m in imported_modules(path) if "dicom" in m}, path.name


def test_the_case_layer_builds_a_case_with_seedopt_dicom_blocked(tmp_path: Path) -> None:
    """In a fresh interpreter where importing seedopt.dicom fails, the case layer still
    imports and builds a phantom case."""
    case_keys = ("name", "description", "grid", "structures", "roles")
    config = json.dumps({k: SMALL[k] for k in case_keys})
    script = f"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "seedopt.dicom" or name.startswith("seedopt.dicom."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from seedopt.case import Case, load_case_spec
case = Case.from_spec(load_case_spec(json.loads({config!r})))
assert case.masks["GTV"].any() and not any(m.startswith("seedopt.dicom") for m in sys.modules)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


ASSEMBLERS = {
    "seedopt/pipeline.py",
    "seedopt/replan.py",
    "tests/test_candidates.py",
    "tests/test_paths.py",
    "benchmarks/bench_paths.py",
}
"""Where ``build_candidates`` may be called: the pipeline, the re-plan (whose candidates are the
approach's beside the needles inserted), the candidates' own tests (their geometry, their
path rules) and the path-rules benchmark (candidates with and without the CT)."""


def calls(path: Path, name: str) -> bool:
    """``path`` calls a function or method called ``name``."""
    return any(
        isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
        for node in ast.walk(ast.parse(path.read_text()))
    )


def test_prepare_is_the_one_place_that_assembles_a_problem() -> None:
    callers = {
        str(path.relative_to(ROOT))
        for folder in ("seedopt", "optimizer", "benchmarks", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if calls(path, "build_candidates")
    }
    assert "seedopt/pipeline.py" in callers and callers <= ASSEMBLERS, callers - ASSEMBLERS


def test_reuse_keeps_the_case_and_rebuilds_candidates_and_problem() -> None:
    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    base = prepare(spec, cpu_backend())
    assert isinstance(base, PreparedCase)
    assert set(base.runtime_s) == {"case", "candidates", "dose_matrix", "beyond_grid"}
    finer = spec.model_copy(
        update={"approach": spec.approach.model_copy(update={"seed_pitch_mm": 2.5})}
    )
    again = prepare(finer, cpu_backend(), reuse=base)
    assert again.case is base.case and again.images is base.images
    assert again.candidates.n_seeds > base.candidates.n_seeds
    assert again.problem.n_candidates == again.candidates.n_seeds
    other = spec.model_copy(update={"prescription_gy": 140.0})
    assert prepare(other, cpu_backend(), reuse=base).problem.prescription_gy == 140.0
    moved = spec.model_copy(update={"target_margin_mm": 2.0})
    with pytest.raises(ValueError, match="another case"):
        prepare(moved, cpu_backend(), reuse=base)


def test_a_dicom_plan_reads_its_files_once(tmp_path: Path, monkeypatch) -> None:
    """Planning a DICOM case and writing every output (rtplan.dcm, rtdose.dcm included)
    reads the structure set and the CT once each."""
    import seedopt.dicom.images as images
    from seedopt.dicom.init_case import init_case
    from seedopt.export import RESULT_FILES, write_outputs
    from seedopt.output_set import OutputSet
    from seedopt.planning import plan_case

    uids = {"study_uid": generate_uid(), "frame_uid": generate_uid()}
    write_ct(tmp_path / "ct", **uids)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    config = tmp_path / "case.yaml"
    text, _ = init_case(rs, "gtv", 120.0, config, tmp_path / "ct", 2.5, 10.0)
    config.write_text(text)
    reads = {"rtstruct": 0, "ct": 0}

    def counted(name, read):
        def wrapper(*args, **kwargs):
            reads[name] += 1
            return read(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(images, "load_rtstruct", counted("rtstruct", images.load_rtstruct))
    monkeypatch.setattr(images, "load_ct", counted("ct", images.load_ct))
    plan = plan_case(load_plan_spec(config), cpu_backend(), method="clinical")
    with OutputSet(tmp_path / "out", RESULT_FILES) as outputs:
        written = write_outputs(plan, outputs)
    assert set(written) >= {"rtplan.dcm", "rtdose.dcm"}
    assert plan.images is not None and reads == {"rtstruct": 1, "ct": 1}
