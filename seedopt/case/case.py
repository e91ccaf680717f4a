"""A planning case: the dose grid, structure masks by role, and an optional prior dose."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_h5
from ..errors import SeedoptError
from .config import CaseSpec
from .ct_volume import CTVolume
from .grid import Grid
from .shapes import ImageSource, build_masks
from .structures import expand, skin_shell

DERIVED_SKIN = "Skin"
H5_FORMAT = "seedopt-case-1"


@dataclass(frozen=True)
class Case:
    """Structures on a grid, each a boolean mask of shape ``grid.shape`` (z, y, x).

    Roles name structures in ``masks``: ``target`` is the planning target (the GTV expanded
    by the configured margin), ``skin`` is given or derived from ``body``.
    """

    name: str
    grid: Grid
    masks: dict[str, np.ndarray] = field(repr=False)
    target: str
    body: str
    skin: str
    cord: str | None = None
    oars: tuple[str, ...] = ()
    nogo: tuple[str, ...] = ()
    prior_dose_gy: np.ndarray | None = field(default=None, repr=False)
    prior_beyond_max_gy: float | None = None
    """The prior course's highest dose beyond the grid (Gy; 0 beyond its own RT Dose)."""
    ct: CTVolume | None = field(default=None, repr=False)
    """The CT over the grid, on the CT's voxels, for the needle-path rules (None: no CT)."""

    def __post_init__(self) -> None:
        for role in ("target", "body", "skin"):
            name = getattr(self, role)
            if name not in self.masks:
                raise SeedoptError(f"case {self.name}: {role} structure {name!r} is missing")
            if not self.masks[name].any():
                raise SeedoptError(
                    f"case {self.name}: {role} structure {name!r} has no voxels "
                    "on the dose grid (outside the grid?)"
                )
        for name, m in self.masks.items():
            if m.shape != self.grid.shape or m.dtype != bool:
                raise SeedoptError(
                    f"case {self.name}: mask {name!r} is not a boolean array of "
                    f"the grid's shape {self.grid.shape}"
                )
        if self.prior_dose_gy is not None and self.prior_dose_gy.shape != self.grid.shape:
            raise SeedoptError(f"case {self.name}: prior dose shape differs from the grid's")

    @classmethod
    def from_spec(cls, spec: CaseSpec, images: ImageSource | None = None) -> Case:
        """Build the masks of a validated case config; image-based structures (``contours``,
        ``ct_body``) come from ``images``, read once by the caller (``seedopt.pipeline``:
        the case layer reads no DICOM), and so does the CT kept for the needle paths."""
        g = spec.grid
        grid = Grid.covering(g.min_mm, g.max_mm, g.spacing_mm)
        masks = build_masks(dict(spec.structures), grid, images)
        roles = spec.roles
        target = roles.target
        if spec.target_margin_mm > 0:
            target = f"{roles.target}+{spec.target_margin_mm:g}mm"
            masks[target] = (
                expand(masks[roles.target], spec.target_margin_mm, grid) & masks[roles.body]
            )
        skin = roles.skin.structure
        if skin is None:
            skin = DERIVED_SKIN
            masks[skin] = skin_shell(masks[roles.body], roles.skin.derive_thickness_mm, grid)
        if not masks[roles.target].any():
            raise SeedoptError(
                f"{spec.name}: roles.target: structure {roles.target!r} has no "
                "voxels on the dose grid (outside grid.min_mm..max_mm?)"
            )
        return cls(
            spec.name,
            grid,
            masks,
            target,
            roles.body,
            skin,
            roles.cord,
            tuple(roles.oars),
            tuple(roles.nogo),
            ct=images.ct_volume(grid) if images is not None else None,
        )

    def volume_cc(self, name: str) -> float:
        return float(self.masks[name].sum()) * self.grid.voxel_cc

    def roles(self) -> dict[str, object]:
        return {
            "target": self.target,
            "body": self.body,
            "skin": self.skin,
            "cord": self.cord,
            "oars": list(self.oars),
            "nogo": list(self.nogo),
        }

    def save_h5(self, path: Path) -> None:
        """Write an HDF5 case file atomically (a temporary file renamed into place)."""

        with atomic_h5(Path(path)) as f:
            f.attrs.update(
                format=H5_FORMAT,
                name=self.name,
                roles=json.dumps(self.roles()),
                origin_mm=self.grid.origin_mm,
                spacing_mm=self.grid.spacing_mm,
            )
            grp = f.create_group("masks")
            for name, m in self.masks.items():
                grp.create_dataset(name, data=m, compression="gzip", shuffle=True)
            if self.prior_dose_gy is not None:
                f.create_dataset(
                    "prior_dose_gy",
                    data=self.prior_dose_gy.astype(np.float32),
                    compression="gzip",
                )
            if self.prior_beyond_max_gy is not None:
                f.attrs["prior_beyond_max_gy"] = self.prior_beyond_max_gy
            if self.ct is not None:
                ct = f.create_group("ct")
                ct.create_dataset("hu", data=self.ct.hu, compression="gzip")
                ct.create_dataset("body", data=self.ct.body, compression="gzip")
                ct.attrs.update(
                    origin_mm=self.ct.grid.origin_mm, spacing_mm=self.ct.grid.spacing_mm
                )

    @classmethod
    def load_h5(cls, path: Path) -> Case:
        """Read a case file written by ``save_h5`` (structure masks as (z, y, x) datasets)."""
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != H5_FORMAT:
                    raise SeedoptError(
                        f"{path}: not a seedopt case file (format attribute "
                        f"{f.attrs.get('format')!r}, expected {H5_FORMAT!r})"
                    )
                masks = {k: np.asarray(v, dtype=bool) for k, v in f["masks"].items()}
                shape = next(iter(masks.values())).shape
                grid = Grid(_xyz(f.attrs["origin_mm"]), _xyz(f.attrs["spacing_mm"]), shape)
                roles = json.loads(f.attrs["roles"])
                prior = np.asarray(f["prior_dose_gy"]) if "prior_dose_gy" in f else None
                beyond = f.attrs.get("prior_beyond_max_gy")
                ct = _ct_of(f["ct"]) if "ct" in f else None
                name = str(f.attrs["name"])
        except OSError as exc:
            raise SeedoptError(f"cannot read case file {path}: {exc}") from None
        return cls(
            name,
            grid,
            masks,
            roles["target"],
            roles["body"],
            roles["skin"],
            roles["cord"],
            tuple(roles["oars"]),
            tuple(roles["nogo"]),
            prior,
            None if beyond is None else float(beyond),
            ct,
        )


def _xyz(values: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _ct_of(group: Any) -> CTVolume:
    """The CT volume a case file's ``ct`` group holds (``Case.save_h5``)."""
    hu = np.asarray(group["hu"], dtype=np.float32)
    grid = Grid(_xyz(group.attrs["origin_mm"]), _xyz(group.attrs["spacing_mm"]), hu.shape)
    return CTVolume(hu, np.asarray(group["body"], dtype=bool), grid)
