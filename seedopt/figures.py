"""Figures a physicist reads faster than tables (matplotlib, written to PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .backend import Backend
from .sources import SourceModel


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically (never a partial image), then free it."""
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def commissioning_figure(model: SourceModel, path: Path, backend: Backend | None = None) -> None:
    """Three panels: g_L(r) and F(r, theta) from the engine against the consensus nodes, and
    the dose-rate map (cGy/h per U) around the seed with isodose lines."""
    from .commissioning import engine_anisotropy, engine_radial_dose, engine_rate

    plt = _pyplot()
    fig, (ax_g, ax_f, ax_map) = plt.subplots(1, 3, figsize=(15, 4.6))

    r = np.linspace(0.1, 10.0, 400)
    ax_g.plot(r, engine_radial_dose(model, r, backend), label="seedopt engine")
    ax_g.plot(model.gL_r_cm, model.gL, "o", label="TG-43 consensus")
    ax_g.set(xlabel="r (cm)", ylabel="g_L(r)", title=f"{model.model_id}: radial dose function")
    ax_g.legend()

    theta = np.linspace(0.0, 90.0, 181)
    for k, rk in enumerate(model.F_r_cm):
        (line,) = ax_f.plot(theta, engine_anisotropy(model, rk, theta, backend), lw=1)
        ax_f.plot(
            model.F_theta_deg,
            model.F[:, k],
            "o",
            ms=3,
            color=line.get_color(),
            label=f"r = {rk:g} cm",
        )
    ax_f.set(xlabel="theta (deg)", ylabel="F(r, theta)", title="2D anisotropy function")
    ax_f.legend(fontsize=7, ncol=2)

    x = np.linspace(-30, 30, 241)
    xx, zz = np.meshgrid(x, x)
    pts = np.stack([xx.ravel(), 0 * xx.ravel(), zz.ravel()], axis=1)
    rate = engine_rate(model, pts, backend).reshape(xx.shape)
    im = ax_map.imshow(np.log10(rate), extent=(-30, 30, -30, 30), origin="lower", cmap="inferno")
    cs = ax_map.contour(
        xx, zz, rate, levels=[0.05, 0.1, 0.25, 0.5, 1, 2, 5], colors="w", linewidths=0.7
    )
    ax_map.clabel(cs, fontsize=7, fmt="%g")
    ax_map.plot([0, 0], [-2.25, 2.25], color="c", lw=3)
    ax_map.set(
        xlabel="x (mm)", ylabel="z, seed axis (mm)", title="dose rate per U (cGy/h), isodose lines"
    )
    fig.colorbar(im, ax=ax_map, label="log10 cGy/h/U")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path, dpi=110)


SEEDS_SHOWN_WITHIN_MM = 5.0
"""Seeds this close to a slice are drawn on it."""


def dvh_figure(plan: Any, path: Path) -> None:
    """Cumulative DVH of every structure (physical implant dose), with the prescription
    marked; for each EQD2 limit, its structure's EQD2 curve (dashed, the same colour) and
    the limit (a tick)."""
    from .metrics import Structure
    from .plan_metrics import QUANTITY_NAMES
    from .reirradiation import limited_volume

    plt = _pyplot()
    case, rx = plan.case, plan.metrics.prescription_gy
    fig, ax = plt.subplots(figsize=(8, 5))
    top = 3.0 * rx
    colours, eqd2 = {}, False
    for name, mask in case.masks.items():
        if name == case.body:
            continue
        s = Structure.from_mask(plan.dose_gy, mask, case.grid.voxel_cc)
        levels, pct = s.dvh(bin_gy=top / 400, max_gy=top)
        (line,) = ax.plot(levels, pct, lw=2.5 if name == case.target else 1.2, label=name)
        colours[name] = line.get_color()
    for lim in plan.spec.hard_limits(case.skin):
        if lim.quantity == "physical":
            continue
        eqd2 = True
        volume = limited_volume(plan.spec, case, plan.source, lim, plan.dose_gy)
        s = Structure.from_mask(volume, case.masks[lim.structure], case.grid.voxel_cc)
        levels, pct = s.dvh(bin_gy=top / 400, max_gy=top)
        label = f"{lim.structure} {QUANTITY_NAMES[lim.quantity]}"
        ax.plot(levels, pct, ls="--", lw=1.5, color=colours.get(lim.structure), label=label)
        ax.plot([lim.max_gy], [0.5], marker="|", ms=14, color=colours.get(lim.structure))
    ax.axvline(rx, color="k", ls="--", lw=1, label=f"prescription {rx:g} Gy")
    ax.set(
        xlabel="dose (Gy; EQD2 for the dashed curves)" if eqd2 else "dose (Gy)",
        ylabel="volume (%)",
        xlim=(0, top),
        ylim=(0, 101),
        title=f"{case.name}: cumulative DVH ({plan.result.method})",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def slice_figure(plan: Any, path: Path) -> None:
    """Axial and sagittal slices through the target's centre: dose colour wash, isodose lines
    at 50/100/150/200 % of the prescription, structure outlines, needles (projected) and the
    seeds within ``SEEDS_SHOWN_WITHIN_MM`` of each slice."""
    plt = _pyplot()
    case, rx = plan.case, plan.spec.prescription_gy
    grid = case.grid
    centre = np.argwhere(case.masks[case.target]).mean(axis=0).round().astype(int)  # z, y, x
    x, y, z = grid.axes_mm()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    views = [
        ("axial", centre[0], 0, (x, y), ("x (mm)", "y (mm)"), (0, 1)),
        ("sagittal", centre[2], 2, (y, z), ("y (mm)", "z (mm)"), (1, 2)),
    ]
    seeds = plan.seeds_mm
    for ax, (title, index, axis, (h, v), labels, (ih, iv)) in zip(axes, views, strict=True):
        cut = np.take(plan.dose_gy, index, axis=axis)
        im = ax.imshow(
            np.minimum(cut, 3 * rx),
            origin="lower",
            cmap="jet",
            alpha=0.75,
            extent=(h[0], h[-1], v[0], v[-1]),
            aspect="equal",
        )
        cs = ax.contour(
            h,
            v,
            cut,
            levels=[0.5 * rx, rx, 1.5 * rx, 2 * rx],
            colors=["c", "w", "y", "m"],
            linewidths=1.2,
        )
        ax.clabel(
            cs,
            fmt={lv: f"{p}%" for lv, p in zip(cs.levels, (50, 100, 150, 200), strict=False)},
            fontsize=7,
        )
        for k, (name, mask) in enumerate(case.masks.items()):
            m = np.take(mask, index, axis=axis)
            if m.any() and 0 < m.sum() < m.size:
                ax.contour(
                    h, v, m.astype(float), levels=[0.5], colors=[f"C{k % 10}"], linewidths=1.0
                )
                ax.plot([], [], color=f"C{k % 10}", label=name)
        plane_mm = (z, y, x)[axis][index]  # array axis (z, y, x) -> coordinate index 2 - axis
        near = np.abs(seeds[:, 2 - axis] - plane_mm) <= SEEDS_SHOWN_WITHIN_MM
        ax.plot(seeds[near, ih], seeds[near, iv], "o", ms=4, mfc="k", mec="w", label="seeds")
        for k in plan.used_needles():
            n = plan.candidates.needles[k]
            ax.plot(
                [n.entry_mm[ih], n.tip_mm[ih]],
                [n.entry_mm[iv], n.tip_mm[iv]],
                "-",
                color="0.3",
                lw=0.6,
            )
        ax.set(title=f"{title} at {plane_mm:.0f} mm", xlabel=labels[0], ylabel=labels[1])
        ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=axes, shrink=0.8, label="dose (Gy), clipped at 300 % Rx")
    fig.suptitle(
        f"{case.name}: {len(seeds)} seeds, {len(plan.used_needles())} needles, Rx {rx:g} Gy"
    )
    _save(fig, path, dpi=100)


def dvh_band_figure(robustness: Any, nominal_gy: Any, rx_gy: float, title: str, path: Path) -> None:
    """The target's DVH under needle errors: the 5-95 % and 25-75 % bands of the scenarios'
    curves, their median and the plan as planned, with the prescription marked."""
    plt = _pyplot()
    top = 3.0 * rx_gy
    levels = np.linspace(0.0, top, 401)
    doses = np.sort(np.asarray(robustness.target_doses), axis=1)
    n_points = doses.shape[1]
    curves = np.array(  # (n, levels): % of the target at or above each level
        [100.0 * (1.0 - np.searchsorted(row, levels, side="left") / n_points) for row in doses]
    )
    fig, ax = plt.subplots(figsize=(8, 5))
    for lo, hi, alpha in ((5, 95, 0.2), (25, 75, 0.35)):
        ax.fill_between(
            levels,
            np.percentile(curves, lo, axis=0),
            np.percentile(curves, hi, axis=0),
            color="C1",
            alpha=alpha,
            lw=0,
            label=f"scenarios {lo}-{hi} %",
        )
    ax.plot(levels, np.median(curves, axis=0), color="C1", lw=1.5, label="scenarios, median")
    planned_sorted = np.sort(np.asarray(nominal_gy))
    planned = 100.0 * (1.0 - np.searchsorted(planned_sorted, levels, side="left") / n_points)
    ax.plot(levels, planned, color="k", lw=1.5, label="as planned")
    ax.axvline(rx_gy, color="k", ls="--", lw=1, label=f"prescription {rx_gy:g} Gy")
    ax.set(
        xlabel="dose (Gy)", ylabel="target volume (%)", xlim=(0, top), ylim=(0, 101), title=title
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)
