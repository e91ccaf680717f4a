"""A patient-specific needle template as a triangle mesh: a plate over the needles' entries
whose underside follows the skin, one guide channel per needle along its planned line, and
three registration holes.

Construction (all in the plate's frame, whose normal ``n`` is the needles' mean direction,
into the patient):

1. The plate is a level set: on a grid of ``resolution_mm`` voxels the signed distance ``s``
   from the skin (SciPy's exact Euclidean distance transform of the smoothed body mask,
   ``seedopt.operating_room.skin``) and the in-plane distance ``w`` from the convex hull of
   the entries give ``max(gap - inset - s, s - gap - thickness, w - margin) <= 0``, meshed
   by scikit-image's marching cubes: the underside lies ``UNDERSIDE_INSET_MM`` inside
   ``gap_mm`` off the skin (so that, measured on the mesh, it stays within the gap) and the
   top ``gap_mm + thickness_mm`` off it, over the hull grown by ``margin_mm``.
2. Each needle gets a sleeve (a solid cylinder ``sleeve_wall_mm`` thick, from mid-plate to
   ``sleeve_mm`` above the top, along the needle) united with the plate, and a bore (a
   cylinder of the channel's diameter on the needle's line, through plate and sleeve)
   subtracted; three registration holes along ``n`` are subtracted too. The booleans are
   manifold3d's, exact on the cylinders' 64-gons.

Every step that cannot give a channel or a hole refuses in one line (``SeedoptError``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from manifold3d import Manifold, Mesh, OpType
from scipy import ndimage
from skimage.measure import marching_cubes
from skimage.morphology import convex_hull_image

from ..candidates.freehand import segment_distances
from ..candidates.template import plane_basis
from ..case import Case
from ..errors import SeedoptError
from .skin import SKIN_LEVEL, BodyField
from .template_options import TemplateOptions

SECTIONS = 64
"""Sides of the polygon a cylinder is made of (the inscribed radius is 0.1 % short)."""
MAX_VOXELS = 40_000_000
"""Largest construction grid; beyond it the window is too wide for ``resolution_mm``."""
SIMPLIFY_MM = 1e-3
"""Edges shorter than this are collapsed after the booleans, mm."""
BORE_INTO_BODY_MM = 1.0
"""How far below the skin entry a bore starts, so that it opens through the underside."""


UNDERSIDE_INSET_MM = 0.05
"""The underside is built this far inside ``gap_mm`` off the skin: measured on the finished
mesh against the skin meshed by marching cubes on the case grid, its distance then stays in
(0, gap_mm] (built at the gap itself it measured up to 0.02 mm over: the two meshings of the
same skin differ by a few hundredths)."""


@dataclass(frozen=True)
class Channel:
    """A guide channel on a needle's planned line (mm, patient coordinates).

    Attributes
    ----------
    entry_mm : (3,) the needle's skin entry.
    direction : (3,) unit vector from the entry to the tip.
    bore_start_mm, bore_end_mm : (3,) ends of the bore's axis, below the skin and above the
        sleeve (or the plate's top when there is no sleeve).
    top_mm : (3,) where the line leaves the plate's top.
    """

    entry_mm: np.ndarray
    direction: np.ndarray
    bore_start_mm: np.ndarray
    bore_end_mm: np.ndarray
    top_mm: np.ndarray


@dataclass(frozen=True)
class PlateFrame:
    """The plate's construction grid: voxel (i, j, k) lies at ``origin + h (i u + j v + k n)``.

    ``u, v, n`` are right-handed unit vectors (``n`` into the patient), ``h`` the voxel
    (mm), ``shape`` the voxel counts along u, v and n.
    """

    origin_mm: np.ndarray
    u: np.ndarray
    v: np.ndarray
    n: np.ndarray
    h: float
    shape: tuple[int, int, int]

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) rows u, v, n: local = rotation @ (world - origin)."""
        return np.stack([self.u, self.v, self.n])

    def to_world(self, local_mm: np.ndarray) -> np.ndarray:
        """(m, 3) world points of (m, 3) local ones (mm along u, v, n from the origin)."""
        return self.origin_mm + np.asarray(local_mm) @ self.rotation

    def to_local(self, world_mm: np.ndarray) -> np.ndarray:
        """(m, 3) local coordinates (mm) of (m, 3) world points."""
        return (np.asarray(world_mm) - self.origin_mm) @ self.rotation.T

    def points(self) -> np.ndarray:
        """(nu, nv, nw, 3) world positions of every voxel."""
        i, j, k = (self.h * np.arange(c) for c in self.shape)
        return (
            self.origin_mm
            + i[:, None, None, None] * self.u
            + j[None, :, None, None] * self.v
            + k[None, None, :, None] * self.n
        )


@dataclass(frozen=True)
class TemplateMesh:
    """The template and what it was built from.

    Attributes
    ----------
    mesh : the template (mm, patient coordinates), closed and outward-facing.
    frame : the plate's construction frame (``frame.n`` is the plate's normal).
    channels : one per needle, in the needles' order.
    fiducials_mm : (3, 3) the registration holes' axes' points on the plate's mid-surface;
        each hole runs along ``frame.n``.
    skin : the skin surface under the window (marching cubes on the case grid).
    window_mm : (nu, nv) in-plane distance from the entries' convex hull on the frame's
        grid (the plate covers ``window_mm <= options.margin_mm``).
    options : the parameters.
    """

    mesh: trimesh.Trimesh
    frame: PlateFrame
    channels: list[Channel]
    fiducials_mm: np.ndarray
    skin: trimesh.Trimesh
    window_mm: np.ndarray
    options: TemplateOptions


def build_template(
    case: Case, entries_mm: np.ndarray, tips_mm: np.ndarray, options: TemplateOptions
) -> TemplateMesh:
    """The template for needles from ``entries_mm`` to ``tips_mm`` ((k, 3) each, mm).

    Raises
    ------
    SeedoptError
        No needles; a needle of no length, tilted beyond ``max_tilt_deg`` from the plate's
        normal, or whose channel leaves the plate through its edge; two channels closer than
        ``min_wall_mm``; no room for the registration holes; the body cut by the grid under
        the window; a window too large for ``resolution_mm``.
    """
    entries = np.asarray(entries_mm, float).reshape(-1, 3)
    tips = np.asarray(tips_mm, float).reshape(-1, 3)
    if not len(entries):
        raise SeedoptError("the plan has no needles: there is nothing to make a template for")
    directions = _directions(entries, tips)
    n = directions.mean(axis=0)
    n /= np.linalg.norm(n)
    tilt = np.degrees(np.arccos(np.clip(directions @ n, -1.0, 1.0)))
    if tilt.max() > options.max_tilt_deg:
        k = int(np.argmax(tilt))
        raise SeedoptError(
            f"needle {k + 1} is {tilt[k]:.1f} deg from the plate's normal, beyond "
            f"template.max_tilt_deg={options.max_tilt_deg:g}: one plate cannot guide it"
        )
    frame = _frame(entries, n, options)
    field = BodyField(case)
    pts = frame.points()
    phi = field.at(pts.reshape(-1, 3)).reshape(frame.shape)
    window = _window_distance(frame, entries)
    _check_skin_on_grid(field, pts, phi > SKIN_LEVEL, window <= options.margin_mm)
    s = _signed_distance(phi, frame.h)
    plate = _plate(frame, s, window, options)
    channels = [
        _channel(frame, s, window, k + 1, e, d, options)
        for k, (e, d) in enumerate(zip(entries, directions, strict=True))
    ]
    _check_channels_apart(channels, options)
    fiducials = _fiducials(frame, s, window, channels, options)
    mesh = _assemble(plate, channels, fiducials, frame, options)
    lo, hi = entries.min(axis=0), entries.max(axis=0)
    reach = options.margin_mm + options.gap_mm + options.thickness_mm
    skin = field.skin_mesh(lo - reach, hi + reach)
    return TemplateMesh(mesh, frame, channels, fiducials, skin, window, options)


def _directions(entries: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """(k, 3) unit directions entry -> tip; a needle of no length is refused."""
    length = np.linalg.norm(tips - entries, axis=1)
    if not np.all(np.isfinite(length)) or length.min() < 1e-3:
        k = int(np.argmin(np.nan_to_num(length, nan=-1.0)))
        raise SeedoptError(f"needle {k + 1}: its entry and tip coincide or are not finite")
    return (tips - entries) / length[:, None]


def _frame(entries: np.ndarray, n: np.ndarray, o: TemplateOptions) -> PlateFrame:
    """A grid over the window grown by the plate's depth, reaching ``margin_mm`` of skin
    relief above and below the entries."""
    u, v = plane_basis(n)
    rot = np.stack([u, v, n])
    local = entries @ rot.T
    reach = o.margin_mm + o.gap_mm + o.thickness_mm + 2.0
    lo, hi = local.min(axis=0) - reach, local.max(axis=0) + reach
    h = o.resolution_mm
    shape = tuple(int(c) for c in np.ceil((hi - lo) / h) + 1)
    if np.prod(shape, dtype=float) > MAX_VOXELS:
        raise SeedoptError(
            f"the template window needs {np.prod(shape, dtype=float):.3g} voxels of "
            f"template.resolution_mm={h:g} (at most {MAX_VOXELS:.0e}); raise resolution_mm"
        )
    return PlateFrame(lo @ rot, u, v, n, h, shape)  # type: ignore[arg-type]


def _window_distance(frame: PlateFrame, entries: np.ndarray) -> np.ndarray:
    """(nu, nv) in-plane distance (mm) from the convex hull of the entries, negative
    inside (distances between voxel centres)."""
    ij = np.rint(frame.to_local(entries)[:, :2] / frame.h).astype(int)
    seeds = np.zeros(frame.shape[:2], bool)
    seeds[ij[:, 0], ij[:, 1]] = True
    hull = convex_hull_image(seeds) | seeds
    outside = ndimage.distance_transform_edt(~hull)
    inside = ndimage.distance_transform_edt(hull)
    return frame.h * np.where(hull, 0.5 - inside, outside - 0.5)


def _check_skin_on_grid(
    field: BodyField, pts: np.ndarray, body: np.ndarray, in_window: np.ndarray
) -> None:
    """Refuse when the skin under the window lies beyond the case grid (unknown there)."""
    edge = body & ~ndimage.binary_erosion(body, border_value=1)
    under = edge & in_window[:, :, None]
    if not under.any():
        raise SeedoptError("no skin under the needle entries: the entries are not on the body")
    if not field.on_grid(pts[under]).all():
        raise SeedoptError(
            "the body reaches the edge of the case grid under the template window, so the "
            "skin there is unknown; enlarge the grid (grid.min_mm/max_mm) or narrow "
            "template.margin_mm"
        )


def _signed_distance(phi: np.ndarray, h: float) -> np.ndarray:
    """Signed distance (mm) from the skin (``phi``'s ``SKIN_LEVEL``), positive outside.

    Each voxel takes the skin's tangent plane at its nearest voxel by the surface (SciPy's
    Euclidean feature transform); that voxel's foot point and normal come from ``phi`` and
    its gradient (one Newton step), so the distance is sub-voxel where a voxel staircase's
    distance transform would be off by up to half a voxel.
    """
    body = phi > SKIN_LEVEL
    near = body ^ ndimage.binary_erosion(body, border_value=1)
    near |= ndimage.binary_dilation(body, border_value=0) & ~body
    idx = ndimage.distance_transform_edt(~near, return_distances=False, return_indices=True)
    k = np.argwhere(near)
    grad = np.stack([g[near] for g in np.gradient(phi, h)], axis=1)  # (m, 3), per mm
    norm2 = np.maximum(np.einsum("ij,ij->i", grad, grad), 1e-12)
    foot = k * h - ((phi[near] - SKIN_LEVEL) / norm2)[:, None] * grad
    outward = -grad / np.sqrt(norm2)[:, None]
    which = np.zeros(phi.shape, np.int64)
    which[near] = np.arange(len(k))
    nearest = which[idx[0], idx[1], idx[2]]
    pos = np.stack(np.meshgrid(*(h * np.arange(c) for c in phi.shape), indexing="ij"), axis=-1)
    rel = pos - foot[nearest]
    return np.einsum("...j,...j->...", rel, outward[nearest]).astype(np.float32)


def _plate(
    frame: PlateFrame, s: np.ndarray, window: np.ndarray, o: TemplateOptions
) -> trimesh.Trimesh:
    """The plate: marching cubes of its level set (module docstring), in world mm."""
    f = np.maximum(o.gap_mm - UNDERSIDE_INSET_MM - s, s - (o.gap_mm + o.thickness_mm))
    f = np.maximum(f, (window - o.margin_mm)[:, :, None])
    bare = (window <= o.margin_mm - frame.h) & ~(f <= 0).any(axis=2)
    if bare.any():
        raise SeedoptError(
            "the skin under the template window rises or falls beyond the plate's "
            f"construction box ({int(bare.sum())} columns of {frame.h:g} mm bare); narrow "
            "template.margin_mm"
        )
    f = np.pad(f, 1, constant_values=frame.h)
    verts, faces, _, _ = marching_cubes(f, 0.0, spacing=(frame.h,) * 3)
    plate = trimesh.Trimesh(frame.to_world(verts - frame.h), faces)
    if plate.volume < 0:
        plate.invert()
    if plate.body_count != 1:
        raise SeedoptError(
            f"the plate over the window falls into {plate.body_count} pieces (the skin folds "
            "under it); narrow template.margin_mm or plan needles from one side"
        )
    return plate


def sample_frame(frame: PlateFrame, grid: np.ndarray, world_mm: np.ndarray) -> np.ndarray:
    """A frame array (3D or the in-plane 2D) sampled trilinearly at world points."""
    idx = frame.to_local(world_mm).T / frame.h
    return ndimage.map_coordinates(grid, idx[: grid.ndim], order=1, mode="nearest")


def _channel(
    frame: PlateFrame,
    s: np.ndarray,
    window: np.ndarray,
    k: int,
    entry: np.ndarray,
    d: np.ndarray,
    o: TemplateOptions,
) -> Channel:
    """The channel on the line through ``entry`` along ``d``: where the line leaves the
    plate's top (the distance from the skin reaching ``gap + thickness``), the bore and
    sleeve beyond it."""
    reach = 3.0 * (o.gap_mm + o.thickness_mm + o.margin_mm)
    t = np.arange(0.0, reach, frame.h / 4.0)
    line = entry - t[:, None] * d
    above = np.flatnonzero(sample_frame(frame, s, line) >= o.gap_mm + o.thickness_mm)
    if not len(above):
        raise SeedoptError(
            f"needle {k}: its line does not leave the plate (it runs along the skin)"
        )
    top = line[above[0]]
    room = o.margin_mm - o.channel_radius_mm - o.sleeve_wall_mm - o.min_wall_mm
    if sample_frame(frame, window, top[None])[0] > room:
        raise SeedoptError(
            f"needle {k}: its channel leaves the plate through the plate's edge; widen "
            f"template.margin_mm (now {o.margin_mm:g})"
        )
    end = top - (o.sleeve_mm + 1.0) * d
    return Channel(entry, d, entry + BORE_INTO_BODY_MM * d, end, top)


def _check_channels_apart(channels: list[Channel], o: TemplateOptions) -> None:
    """Refuse two bores with less than ``min_wall_mm`` between them."""
    a0 = np.array([c.bore_start_mm for c in channels])
    a1 = np.array([c.bore_end_mm for c in channels])
    least = 2.0 * o.channel_radius_mm + o.min_wall_mm
    for i in range(len(channels) - 1):
        gap = segment_distances(a0[i], a1[i], a0[i + 1 :], a1[i + 1 :])
        j = int(np.argmin(gap))
        if gap[j] < least:
            raise SeedoptError(
                f"needles {i + 1} and {i + 2 + j}: their channels' axes come "
                f"{gap[j]:.2f} mm apart, less than two channel radii and "
                f"template.min_wall_mm ({least:.2f} mm); the channels would intersect"
            )


def _fiducials(
    frame: PlateFrame,
    s: np.ndarray,
    window: np.ndarray,
    channels: list[Channel],
    o: TemplateOptions,
) -> np.ndarray:
    """(3, 3) registration holes on the plate's mid-surface: far apart, inside the window by
    a wall, clear of every channel and sleeve by a wall; a scalene triangle when it can."""
    r = o.fiducial_diameter_mm / 2.0
    ok = window <= o.margin_mm - r - o.min_wall_mm
    ij = np.argwhere(ok)
    uv = ij * frame.h
    segs = [frame.to_local(np.array([c.bore_start_mm, c.bore_end_mm])) for c in channels]
    flat = np.zeros((len(uv), 3))
    flat[:, :2] = uv
    clear = r + o.channel_radius_mm + o.sleeve_wall_mm + o.min_wall_mm
    for a, b in segs:
        a2, b2 = np.append(a[:2], 0.0), np.append(b[:2], 0.0)
        near = segment_distances(a2, b2, flat, flat) < clear
        flat, uv = flat[~near], uv[~near]
    if len(uv) == 0:
        raise SeedoptError(
            "no room on the plate for the registration holes clear of the channels; widen "
            f"template.margin_mm (now {o.margin_mm:g}) or use a smaller fiducial_diameter_mm"
        )
    centre = uv.mean(axis=0)
    chosen = [int(np.argmax(np.linalg.norm(uv - centre, axis=1)))]
    for _ in range(2):
        dist = np.min([np.linalg.norm(uv - uv[c], axis=1) for c in chosen], axis=0)
        chosen.append(int(np.argmax(dist)))
    picked = uv[chosen]
    if min(np.linalg.norm(picked[a] - picked[b]) for a, b in ((0, 1), (0, 2), (1, 2))) < (
        2 * r + o.min_wall_mm
    ):
        raise SeedoptError(
            "the plate has room for fewer than three registration holes; widen "
            f"template.margin_mm (now {o.margin_mm:g})"
        )
    return np.array([_mid_surface(frame, s, p, o) for p in picked])


def _mid_surface(
    frame: PlateFrame, s: np.ndarray, uv: np.ndarray, o: TemplateOptions
) -> np.ndarray:
    """The world point above in-plane position ``uv`` halfway through the plate."""
    w = frame.h * np.arange(frame.shape[2])
    column = frame.to_world(np.column_stack([np.full_like(w, uv[0]), np.full_like(w, uv[1]), w]))
    level = sample_frame(frame, s, column) - (o.gap_mm + o.thickness_mm / 2.0)
    k = int(np.argmin(np.abs(level)))
    return column[k]


def _assemble(
    plate: trimesh.Trimesh,
    channels: list[Channel],
    fiducials: np.ndarray,
    frame: PlateFrame,
    o: TemplateOptions,
) -> trimesh.Trimesh:
    """Plate united with the sleeves, less the bores and the registration holes (manifold3d),
    with edges shorter than ``SIMPLIFY_MM`` collapsed so that the mesh stays closed once its
    vertices are rounded to an STL's float32 and merged by position."""
    r = o.channel_radius_mm
    solid = _manifold(plate)
    if o.sleeve_mm > 0:
        sleeves = [
            _manifold(
                _cylinder(
                    r + o.sleeve_wall_mm,
                    c.top_mm + (o.thickness_mm / 2.0) * c.direction,
                    c.top_mm - o.sleeve_mm * c.direction,
                )
            )
            for c in channels
        ]
        solid = Manifold.batch_boolean([solid, *sleeves], OpType.Add)
    holes = [_manifold(_cylinder(r, c.bore_start_mm, c.bore_end_mm)) for c in channels]
    depth = o.gap_mm + o.thickness_mm
    for p in fiducials:
        a, b = p + depth * frame.n, p - depth * frame.n
        holes.append(_manifold(_cylinder(o.fiducial_diameter_mm / 2.0, a, b)))
    solid = Manifold.batch_boolean([solid, *holes], OpType.Subtract).simplify(SIMPLIFY_MM)
    out = solid.to_mesh()
    mesh = trimesh.Trimesh(np.asarray(out.vert_properties[:, :3], np.float32), out.tri_verts)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    return mesh


def _manifold(mesh: trimesh.Trimesh) -> Manifold:
    """``mesh`` as a manifold3d solid (float32 vertices, as manifold3d keeps them)."""
    return Manifold(
        Mesh(
            vert_properties=np.asarray(mesh.vertices, np.float32),
            tri_verts=np.asarray(mesh.faces, np.uint32),
        )
    )


def _cylinder(radius: float, a: np.ndarray, b: np.ndarray) -> trimesh.Trimesh:
    """A closed cylinder of ``radius`` (mm) with axis from ``a`` to ``b``."""
    return trimesh.creation.cylinder(radius, segment=np.array([a, b]), sections=SECTIONS)
