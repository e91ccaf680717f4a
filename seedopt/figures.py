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
    """The DVH of a plan (``draw_dvh``) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    draw_dvh(ax, plan.case, plan.dose_gy, plan.metrics.prescription_gy, plan.spec, plan.source)
    ax.set_title(f"{plan.case.name}: cumulative DVH ({plan.result.method})")
    fig.tight_layout()
    _save(fig, path, dpi=110)


def draw_dvh(ax: Any, case: Any, dose_gy: np.ndarray, rx_gy: float, spec: Any, source: Any) -> None:
    """Cumulative DVH of every structure of ``case`` under ``dose_gy`` (Gy, grid shape;
    physical implant dose), with the prescription ``rx_gy`` marked; for each EQD2 limit of
    ``spec``, its structure's EQD2 curve (dashed, the same colour) and the limit (a tick)."""
    from .metrics import Structure
    from .plan_metrics import QUANTITY_NAMES
    from .reirradiation import limited_volume

    top = 3.0 * rx_gy
    colours, eqd2 = {}, False
    for name, mask in case.masks.items():
        if name == case.body:
            continue
        s = Structure.from_mask(dose_gy, mask, case.grid.voxel_cc)
        levels, pct = s.dvh(bin_gy=top / 400, max_gy=top)
        (line,) = ax.plot(levels, pct, lw=2.5 if name == case.target else 1.2, label=name)
        colours[name] = line.get_color()
    for lim in spec.hard_limits(case.skin):
        if lim.quantity == "physical":
            continue
        eqd2 = True
        volume = limited_volume(spec, case, source, lim, dose_gy)
        s = Structure.from_mask(volume, case.masks[lim.structure], case.grid.voxel_cc)
        levels, pct = s.dvh(bin_gy=top / 400, max_gy=top)
        label = f"{lim.structure} {QUANTITY_NAMES[lim.quantity]}"
        ax.plot(levels, pct, ls="--", lw=1.5, color=colours.get(lim.structure), label=label)
        ax.plot([lim.max_gy], [0.5], marker="|", ms=14, color=colours.get(lim.structure))
    ax.axvline(rx_gy, color="k", ls="--", lw=1, label=f"prescription {rx_gy:g} Gy")
    ax.set(
        xlabel="dose (Gy; EQD2 for the dashed curves)" if eqd2 else "dose (Gy)",
        ylabel="volume (%)",
        xlim=(0, top),
        ylim=(0, 101),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


ISODOSE_PCT = (50, 100, 150, 200)
"""Isodose lines drawn, % of the prescription."""
ISODOSE_ON_WASH = ("c", "w", "y", "m")
ISODOSE_ON_GREY = ("cyan", "yellow", "white", "magenta")
"""Their colours over the dose colour wash, and over a grey CT (apart from the structures'
tab10 outlines)."""


def target_centre_index(case: Any) -> np.ndarray:
    """The voxel (z, y, x) nearest the target's centre of mass."""
    return np.argwhere(case.masks[case.target]).mean(axis=0).round().astype(int)


def slice_figure(plan: Any, path: Path) -> None:
    """Axial and sagittal slices through the target's centre (``draw_slice`` with the dose
    as a colour wash)."""
    plt = _pyplot()
    case, rx = plan.case, plan.spec.prescription_gy
    centre = target_centre_index(case)
    needles = [
        (plan.candidates.needles[k].entry_mm, plan.candidates.needles[k].tip_mm)
        for k in plan.used_needles()
    ]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    for ax, (axis, index) in zip(axes, ((0, centre[0]), (2, centre[2])), strict=True):
        im = draw_slice(ax, case, plan.dose_gy, rx, plan.seeds_mm, needles, axis, int(index))
    fig.colorbar(im, ax=axes, shrink=0.8, label="dose (Gy), clipped at 300 % Rx")
    fig.suptitle(f"{case.name}: {len(plan.seeds_mm)} seeds, {len(needles)} needles, Rx {rx:g} Gy")
    _save(fig, path, dpi=100)


VIEWS = {0: ("axial", (0, 1)), 1: ("coronal", (0, 2)), 2: ("sagittal", (1, 2))}
"""Array axis (z, y, x) cut -> view name and the coordinates (x, y, z indices) shown."""


def draw_slice(
    ax: Any,
    case: Any,
    dose_gy: np.ndarray,
    rx_gy: float,
    seeds_mm: np.ndarray,
    needles: list[tuple[np.ndarray, np.ndarray]],
    axis: int,
    index: int,
    background: np.ndarray | None = None,
) -> Any:
    """One slice of ``case`` (array ``axis`` 0 axial, 1 coronal, 2 sagittal, at ``index``):
    isodose lines at ``ISODOSE_PCT`` of ``rx_gy`` over the dose ``dose_gy`` (Gy, grid shape)
    as a colour wash, or over ``background`` (grid shape, grey levels 0 black to 1 white: a
    windowed CT) when given, the lines then in ``ISODOSE_ON_GREY`` and the structures
    dashed; structure outlines, needles ((entry, tip) mm, projected) and the seeds (mm)
    within ``SEEDS_SHOWN_WITHIN_MM`` of the slice. Views are in radiological orientation for
    LPS patient coordinates: the axial view has anterior at the top and the patient's left on
    the right, the coronal superior up, the sagittal anterior on the left. Returns the image
    drawn."""
    name, (ih, iv) = VIEWS[axis]
    coords = case.grid.axes_mm()  # x, y, z
    h, v = coords[ih], coords[iv]
    extent = (h[0], h[-1], v[0], v[-1])
    cut = np.take(dose_gy, index, axis=axis)
    if background is None:
        im = ax.imshow(
            np.minimum(cut, 3 * rx_gy),
            origin="lower",
            cmap="jet",
            alpha=0.75,
            extent=extent,
            aspect="equal",
        )
    else:
        im = ax.imshow(
            np.take(background, index, axis=axis),
            origin="lower",
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            extent=extent,
            aspect="equal",
        )
    colours = ISODOSE_ON_WASH if background is None else ISODOSE_ON_GREY
    cs = ax.contour(
        h,
        v,
        cut,
        levels=[p / 100 * rx_gy for p in ISODOSE_PCT],
        colors=colours,
        linewidths=1.2 if background is None else 1.6,
    )
    ax.clabel(
        cs,
        fmt={lv: f"{p}%" for lv, p in zip(cs.levels, ISODOSE_PCT, strict=False)},
        fontsize=7,
    )
    for k, (structure, mask) in enumerate(case.masks.items()):
        m = np.take(mask, index, axis=axis)
        if m.any() and 0 < m.sum() < m.size:
            ls = "solid" if background is None else "dashed"
            ax.contour(
                h, v, m.astype(float), levels=[0.5], colors=[f"C{k % 10}"], linewidths=1.0,
                linestyles=ls,
            )  # fmt: skip
            ax.plot([], [], color=f"C{k % 10}", ls=ls, label=structure)
    if background is not None:
        for p, colour in zip(ISODOSE_PCT, colours, strict=True):
            ax.plot([], [], color=colour, lw=1.6, label=f"{p} % isodose")
    plane_mm = coords[2 - axis][index]  # array axis (z, y, x) -> coordinate index 2 - axis
    seeds = np.asarray(seeds_mm, float).reshape(-1, 3)
    near = np.abs(seeds[:, 2 - axis] - plane_mm) <= SEEDS_SHOWN_WITHIN_MM
    ax.plot(seeds[near, ih], seeds[near, iv], "o", ms=4, mfc="k", mec="w", label="seeds")
    grey = "0.3" if background is None else "0.7"
    for entry, tip in needles:
        ax.plot([entry[ih], tip[ih]], [entry[iv], tip[iv]], "-", color=grey, lw=0.6)
    labels = "xyz"
    ax.set(
        title=f"{name} at {labels[2 - axis]} = {plane_mm:.0f} mm",
        xlabel=f"{labels[ih]} (mm)",
        ylabel=f"{labels[iv]} (mm)",
    )
    if axis == 0:  # radiological: anterior (-y in LPS) at the top, the patient's left right
        ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper right")
    return im


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
