"""``seedopt escalate``: what dose escalation costs the organs.

For each combination of seed strength (U), seed pitch (mm) and needle limit, one annealing
run plans every prescription level at once (``SimulatedAnnealingOptimizer.sweep``); the
case is prepared once (``pipeline.prepare``) and again per seed pitch with the same case
(``prepare(..., reuse=...)``: new candidates and dose matrix; strength scales the matrix
linearly, a needle limit only changes a cap), the matrix from the HDF5 cache when it is
there. Each level's loading then goes through the plan pipeline (``planning.finish_plan``)
for its dose grid and metrics.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_h5, atomic_path
from ..backend import Backend
from ..errors import SeedoptError
from ..plan_config import PlanSpec
from ..plan_metrics import PlanMetrics
from .specs import anneal_options, spec_with

TARGET_COLUMNS = ("D90_gy", "V100_pct", "V150_pct", "V200_pct")
ORGAN_METRICS = ("D0.1cc_gy", "D2cc_gy")


def escalate(
    spec: PlanSpec,
    backend: Backend,
    rx_levels: np.ndarray,
    *,
    strengths_u: np.ndarray | None = None,
    pitches_mm: np.ndarray | None = None,
    needle_limits: np.ndarray | None = None,
    seed: int | None = None,
    chains_per_level: int = 4,
    iterations: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> Any:
    """The escalation table (a pandas DataFrame, one row per level and combination).

    Columns: rx_gy, strength_u, seed_pitch_mm, max_needles (0: none), the target's
    D90_gy, V100_pct, V150_pct, V200_pct, ``<organ>_D0.1cc_gy`` and ``<organ>_D2cc_gy`` of
    every structure but the target and body, n_needles, n_seeds, total_strength_u,
    goals_met, n_goals_missed, objective. Annealing options come from the config's
    ``optimizer.options`` (``specs.anneal_options``; chains are ``chains_per_level`` per
    level), ``iterations`` overrides.
    """
    import pandas as pd

    from ..optimizer import get_optimizer
    from ..pipeline import prepare
    from ..planning import finish_plan

    base = None  # the first pitch's prepared case: later pitches reuse its case and images
    base_strength = spec.source.build().air_kerma_strength_u
    options = anneal_options(spec, **({} if iterations is None else {"iterations": iterations}))
    rng = spec.optimizer.seed if seed is None else seed
    annealer = get_optimizer("anneal", progress)
    rows = []
    axes = (
        [None] if pitches_mm is None else list(pitches_mm),
        [None] if strengths_u is None else list(strengths_u),
        [None] if needle_limits is None else [int(n) for n in needle_limits],
    )
    for pitch in axes[0]:
        pspec = (
            spec
            if pitch is None
            else spec_with(spec, {"approach": {"seed_pitch_mm": float(pitch)}}, "--pitch-mm")
        )
        prepared = prepare(pspec, backend, cache_dir, reuse=base)
        base = base or prepared
        problem = prepared.problem
        for strength, needles in itertools.product(axes[1], axes[2]):
            s = base_strength if strength is None else float(strength)
            overrides: dict[str, Any] = {"source": {"strength_u": s, "activity_mci": None}}
            if needles is not None:
                overrides["goals"] = {"max_needles": needles}
            cspec = spec_with(pspec, overrides, "escalation level")
            scale = s / base_strength  # the matrix is linear in the seed strength
            cproblem = dataclasses.replace(
                problem,
                A_target=problem.A_target * scale,
                A_oar={k: a * scale for k, a in problem.A_oar.items()},
                max_needles=cspec.goals.max_needles,
            )
            results = annealer.sweep(
                cproblem, rx_levels, rng, options, chains_per_level=chains_per_level
            )
            for rx, result in zip(rx_levels, results, strict=True):
                lspec = cspec.model_copy(update={"prescription_gy": float(rx)})
                plan = finish_plan(
                    prepared,
                    result,
                    backend,
                    {"optimize": result.runtime_s},
                    spec=lspec,
                    source=cspec.source.build(),
                )
                rows.append(_row(plan.metrics, float(rx), s, pspec, needles))
    table = pd.DataFrame(rows)
    table.attrs["skin"] = prepared.case.skin
    return table


def _row(
    m: PlanMetrics, rx: float, strength_u: float, spec: PlanSpec, needles: int | None
) -> dict[str, Any]:
    target = m.target_metrics()
    row: dict[str, Any] = {
        "rx_gy": rx,
        "strength_u": strength_u,
        "seed_pitch_mm": spec.approach.seed_pitch_mm,
        "max_needles": needles or 0,
        **{c: target[c] for c in TARGET_COLUMNS},
    }
    for name, s in m.structures.items():
        if name not in (m.target, spec.roles.body):
            row.update({f"{name}_{c}": s[c] for c in ORGAN_METRICS})
    row.update(
        n_needles=m.n_needles,
        n_seeds=m.n_seeds,
        total_strength_u=m.total_strength_u,
        goals_met=int(m.goals_met),
        n_goals_missed=m.n_goals_missed,
        objective=m.objective,
    )
    return row


def write_table(table: Any, out: Path, attrs: dict[str, Any]) -> list[Path]:
    """``escalation.h5`` (compound dataset ``table``, ``attrs``) and ``escalation.csv``,
    each written atomically."""

    h5, csv = out / "escalation.h5", out / "escalation.csv"
    records = table.to_records(index=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_h5(h5) as f:
            f.create_dataset("table", data=np.asarray(records))
            f.attrs.update(schema="seedopt-escalation-1", **attrs)
        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
    except OSError as exc:
        raise SeedoptError(f"cannot write the escalation table in {out}: {exc}") from None
    return [h5, csv]


def escalation_figure(table: Any, spec: PlanSpec, path: Path) -> Path:
    """Target D90 (Gy) against each hard-limited organ's limit metric (Gy), one line per
    strength / pitch / needle combination, the limits dashed."""
    from ..figures import _pyplot

    plt = _pyplot()
    limits = spec.hard_limits(table.attrs.get("skin", "Skin"))
    fig, axes = plt.subplots(1, len(limits), figsize=(5 * len(limits), 4), squeeze=False)
    groups = table.groupby(["strength_u", "seed_pitch_mm", "max_needles"], sort=True)
    for ax, lim in zip(axes[0], limits, strict=True):
        column = f"{lim.structure}_{lim.metric}_gy"
        for (s, p, n), g in groups:
            if column in g:
                label = f"{s:.3g} U, {p:g} mm" + (f", <= {n} needles" if n else "")
                ax.plot(g["D90_gy"], g[column], "o-", label=label)
        ax.axhline(lim.max_gy, color="k", ls="--", lw=1, label=f"limit {lim.max_gy:g} Gy")
        ax.set_xlabel(f"{spec.roles.target} D90 (Gy)")
        ax.set_ylabel(f"{lim.structure} {lim.metric} (Gy)")
        ax.legend(fontsize=7)
    fig.suptitle(f"{spec.name}: dose escalation")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    except OSError as exc:
        raise SeedoptError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path
