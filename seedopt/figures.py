"""Figures a physicist reads faster than tables (matplotlib, written to PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import Backend
from .dose import dose_at_points
from .dose.tg43 import R0_CM, geometry_factor
from .sources import Source, SourceModel


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def commissioning_figure(model: SourceModel, path: Path, backend: Backend | None = None) -> None:
    """Three panels: g_L(r) and F(r, theta) from the engine against the consensus nodes, and
    the dose-rate map (cGy/h per U) around the seed with isodose lines."""
    plt = _pyplot()
    source = Source(model, 1.0)
    origin, axis = np.zeros((1, 3)), [0.0, 0.0, 1.0]
    lam, length = model.dose_rate_constant, model.active_length_cm
    g0 = geometry_factor(length, R0_CM, 90.0)
    fig, (ax_g, ax_f, ax_map) = plt.subplots(1, 3, figsize=(15, 4.6))

    r = np.linspace(0.1, 10.0, 400)
    pts = np.stack([r * 10, 0 * r, 0 * r], axis=1)
    rate = dose_at_points(pts, origin, axis, source, backend=backend, rate=True)
    geo = np.array([geometry_factor(length, x, 90.0) for x in r]) / g0
    ax_g.plot(r, rate / (lam * geo), label="seedopt engine")
    ax_g.plot(model.gL_r_cm, model.gL, "o", label="TG-43 consensus")
    ax_g.set(xlabel="r (cm)", ylabel="g_L(r)", title=f"{model.model_id}: radial dose function")
    ax_g.legend()

    theta = np.linspace(0.0, 90.0, 181)
    for k, rk in enumerate(model.F_r_cm):
        th = np.radians(theta)
        pts = np.stack([rk * 10 * np.sin(th), 0 * th, rk * 10 * np.cos(th)], axis=1)
        rate = dose_at_points(pts, origin, axis, source, backend=backend, rate=True)
        geo = np.array([geometry_factor(length, rk, t) for t in theta]) / g0
        g = np.interp(rk, model.gL_r_cm, model.gL)
        (line,) = ax_f.plot(theta, rate / (lam * geo * g), lw=1)
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
    rate = dose_at_points(pts, origin, axis, source, backend=backend, rate=True).reshape(xx.shape)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
