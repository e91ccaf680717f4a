"""Figures of the operating-room outputs: the hole map of a coplanar template and a rendered
view of a printed template's mesh (matplotlib, headless, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from ..candidates.config import TemplateSpec
from ..figures import _pyplot, _save
from .hole_map import HoleEntry, column_letters

RENDER_FACES = 60_000
"""Most triangles drawn in a rendered view (mplot3d draws each as a polygon)."""


def hole_map_figure(spec: TemplateSpec, holes: list[HoleEntry], title: str, path: Path) -> None:
    """The template's holes as the operator sees them (looking along the needles into the
    patient: columns left to right, rows top to bottom), each used hole filled and labelled
    with its needle depth (mm) and seed count."""
    plt = _pyplot()
    n = int(np.floor(spec.size_mm / spec.hole_pitch_mm + 1e-9)) + 1
    fig, ax = plt.subplots(figsize=(0.42 * n + 2, 0.42 * n + 2))
    c, r = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ax.scatter(c.ravel(), r.ravel(), s=30, facecolors="none", edgecolors="0.7", linewidths=0.6)
    for h in holes:
        ax.scatter([h.column], [h.row], s=260, color="tab:blue")
        ax.annotate(
            f"{h.needle_depth_mm:.0f}\n{len(h.seed_depths_mm)}",
            (h.column, h.row),
            fontsize=5,
            ha="center",
            va="center",
            color="white",
        )
    ax.set_xticks(range(n), [column_letters(k) for k in range(n)], fontsize=6)
    ax.set_yticks(range(n), [str(k + 1) for k in range(n)], fontsize=6)
    ax.set_xlim(-1, n)
    ax.set_ylim(n, -1)
    ax.set_aspect("equal")
    ax.set_title(f"{title}\nused holes: needle depth (mm) over seed count", fontsize=8)
    _save(fig, path, 150)


def template_figure(mesh: trimesh.Trimesh, normal: np.ndarray, title: str, path: Path) -> None:
    """Two shaded views of ``mesh`` (mplot3d): from above (against ``normal``, the needles'
    direction) and from the side."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    plt = _pyplot()
    keep = np.linspace(0, len(mesh.faces) - 1, min(len(mesh.faces), RENDER_FACES)).astype(int)
    tri = mesh.vertices[mesh.faces[keep]]
    normals = mesh.face_normals[keep]
    light = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    shade = 0.35 + 0.65 * np.clip(normals @ light, 0.0, 1.0)
    colours = np.column_stack([0.55 * shade, 0.7 * shade, 0.9 * shade, np.ones_like(shade)])
    fig = plt.figure(figsize=(10, 5))
    lo, hi = mesh.bounds
    mid, half = (lo + hi) / 2.0, (hi - lo).max() / 2.0
    n = np.asarray(normal, float)
    elev_above = np.degrees(np.arcsin(np.clip(-n[2], -1, 1)))
    azim_above = np.degrees(np.arctan2(-n[1], -n[0]))
    for k, (elev, azim, name) in enumerate(
        ((elev_above, azim_above, "from above"), (elev_above - 60, azim_above + 40, "oblique"))
    ):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colours, edgecolors="none"))
        for axis, setter in zip(range(3), (ax.set_xlim, ax.set_ylim, ax.set_zlim), strict=True):
            setter(mid[axis] - half, mid[axis] + half)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlabel("x (mm)", fontsize=7)
        ax.set_ylabel("y (mm)", fontsize=7)
        ax.set_zlabel("z (mm)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, 130)
