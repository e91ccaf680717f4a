"""Memory checks: a grid or a dose matrix that cannot fit in the memory available is refused
in one line naming what to change, before it is allocated (not a MemoryError or the OOM
killer)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_cli import seedopt
from test_planning import SMALL

from seedopt.case import Grid, grid
from seedopt.errors import SeedoptError


def test_a_grid_beyond_the_memory_available_is_refused_naming_spacing_and_margin() -> None:
    with pytest.raises(SeedoptError) as exc:
        Grid.covering((-5e4, -5e4, -5e4), (5e4, 5e4, 5e4), 0.5)
    message = str(exc.value)
    assert message.startswith("a dose grid of 200001 x 200001 x 200001 voxels (8e+15) needs about")
    assert "use a coarser grid spacing (grid.spacing_mm, init-case --spacing-mm)" in message
    assert "or a smaller grid (grid.min_mm/max_mm, init-case --margin-mm)" in message


def test_the_check_compares_with_the_memory_available(monkeypatch) -> None:
    shape_xyz = (25, 30, 40)
    need = np.prod(shape_xyz) * grid.BYTES_PER_VOXEL
    monkeypatch.setattr(grid, "free_bytes", lambda xp: need)
    assert Grid.covering((0, 0, 0), (24, 29, 39), 1.0).shape == (40, 30, 25)
    monkeypatch.setattr(grid, "free_bytes", lambda xp: need - 1)
    with pytest.raises(SeedoptError, match=r"a dose grid of 25 x 30 x 40 voxels \(3e\+04\)"):
        Grid.covering((0, 0, 0), (24, 29, 39), 1.0)


@pytest.mark.parametrize(
    ("lo", "hi", "spacing"),
    [
        ((0, 0, 0), (10, 10, 10), 5e-324),
        ((0, 0, 0), (np.inf, 1, 1), 1.0),
        ((0, 0, 0), (1, 1, 1), np.nan),
    ],
)
def test_a_grid_with_no_finite_voxel_count_is_refused(lo, hi, spacing) -> None:
    with pytest.raises(SeedoptError, match=r"every bound and spacing must be finite"):
        Grid.covering(lo, hi, spacing)


def test_plan_refuses_a_grid_too_fine_for_memory_in_one_line(tmp_path: Path) -> None:
    config = copy.deepcopy(SMALL)
    config["grid"] = {"spacing_mm": 0.01, "min_mm": [-500, -500, -500], "max_mm": [500, 500, 500]}
    path = tmp_path / "fine.yaml"
    path.write_text(yaml.safe_dump(config))
    result = seedopt("plan", str(path), "--out", str(tmp_path / "o"), "--backend", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("seedopt: error: ")]
    assert len(errors) == 1 and re.search(
        r"a dose grid of 100001 x 100001 x 100001 voxels .* GiB is available; use a coarser "
        r"grid spacing \(grid\.spacing_mm",
        errors[0],
    )
    assert not (tmp_path / "o").exists()
