"""I-125 source models (AAPM TG-43U1 consensus data) and sources of a given strength.

Data: ``seedopt/configs/sources/`` (copied from the project's shared TG-43 collection; see
``CONSENSUS_DATA.md`` there for every value's provenance and verification status).

References
----------
Rivard MJ et al. Update of AAPM Task Group No. 43 Report (TG-43U1). Med Phys 31:633 (2004).
Rivard MJ et al. Supplement to TG-43U1 (TG-43U1S1). Med Phys 34:2187 (2007).
Nath R et al. AAPM TG-43 (1995), Med Phys 22:209 - the 1.270 U/mCi apparent-activity factor.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import yaml

from .config_types import MAX_MAGNITUDE
from .errors import SeedoptError

HOURS_PER_DAY = 24.0
DEFAULT_HALF_LIFE_D = 59.4
"""I-125 half-life used by TG-43U1 (days); 59.6 d is also used clinically."""


def decay_factor(days: float, half_life_d: float) -> float:
    """exp(-ln 2 t / T1/2): the fraction of a seed's air-kerma strength (and apparent
    activity) left ``days`` later (negative ``days``: earlier, a factor above 1)."""
    if not (math.isfinite(days) and math.isfinite(half_life_d) and half_life_d > 0):
        raise SeedoptError(f"decay over {days!r} days with half-life {half_life_d!r} d")
    return math.exp(-math.log(2.0) * days / half_life_d)


@dataclass(frozen=True, eq=False)
class SourceModel:
    """TG-43U1 consensus dosimetry parameters of one seed model (compared by identity).

    Attributes
    ----------
    model_id : consensus name, e.g. ``"6711"``.
    dose_rate_constant : Lambda, cGy h^-1 U^-1.
    active_length_cm : L of the line-source geometry function, cm.
    sk_per_mci : apparent-activity factor, U per mCi.
    gL_r_cm, gL : radial dose function g_L(r) nodes (cm) and values.
    F_r_cm, F_theta_deg, F : 2D anisotropy function F(r, theta), shape (n_theta, n_r).
    phi_an_r_cm, phi_an : 1D anisotropy function nodes (cm) and values.
    """

    model_id: str
    description: str
    dose_rate_constant: float
    active_length_cm: float
    half_life_d: float
    sk_per_mci: float
    gL_r_cm: np.ndarray = field(repr=False)
    gL: np.ndarray = field(repr=False)
    F_r_cm: np.ndarray = field(repr=False)
    F_theta_deg: np.ndarray = field(repr=False)
    F: np.ndarray = field(repr=False)
    phi_an_r_cm: np.ndarray = field(repr=False)
    phi_an: np.ndarray = field(repr=False)
    report: str = ""
    status: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """A seed model at a given air-kerma strength, with the half-life used for total dose.

    Attributes
    ----------
    model : the TG-43U1 consensus model.
    air_kerma_strength_u : S_K at implant, U (1 U = 1 cGy cm^2 h^-1).
    half_life_d : days (59.4 by default).
    """

    model: SourceModel
    air_kerma_strength_u: float
    half_life_d: float = DEFAULT_HALF_LIFE_D

    def __post_init__(self) -> None:
        s = self.air_kerma_strength_u
        if not (isinstance(s, (int, float)) and math.isfinite(s) and 0 < s <= MAX_MAGNITUDE):
            raise SeedoptError(
                f"source strength must be a positive number of U (at most {MAX_MAGNITUDE:g}), "
                f"got {s!r}"
            )
        t = self.half_life_d
        if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 < t <= MAX_MAGNITUDE):
            raise SeedoptError(
                f"half_life_d must be a positive number of days (at most {MAX_MAGNITUDE:g}), "
                f"got {t!r}"
            )

    @classmethod
    def from_activity(
        cls,
        model: SourceModel,
        apparent_activity_mci: float,
        half_life_d: float = DEFAULT_HALF_LIFE_D,
    ) -> Source:
        """Source from apparent activity (mCi), S_K = sk_per_mci x A_app (TG-43 1995)."""
        a = apparent_activity_mci
        if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
            raise SeedoptError(f"apparent activity must be a positive number of mCi, got {a!r}")
        return cls(model, model.sk_per_mci * a, half_life_d)

    @property
    def apparent_activity_mci(self) -> float:
        """Apparent activity, mCi."""
        return self.air_kerma_strength_u / self.model.sk_per_mci

    @property
    def mean_life_h(self) -> float:
        """tau = T1/2 / ln 2, hours."""
        return self.half_life_d * HOURS_PER_DAY / math.log(2.0)

    def dose_fraction_delivered(self, days: float) -> float:
        """Fraction of the permanent-implant total dose delivered by ``days`` after implant."""
        if not (math.isfinite(days) and days >= 0):
            raise SeedoptError(f"days after implant must be >= 0, got {days!r}")
        return -math.expm1(-days * HOURS_PER_DAY / self.mean_life_h)

    def dose_per_initial_rate_h(self, days: float | None = None) -> float:
        """Hours that turn an initial dose rate into dose: tau x (1 - exp(-t/tau)).

        ``days=None`` gives the permanent-implant total, D(inf) = Ddot0 x tau.
        """
        if days is None:
            return self.mean_life_h
        return self.mean_life_h * self.dose_fraction_delivered(days)


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-._]", "", str(name)).lower()


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("seedopt.configs").joinpath("sources", name).read_text()
    return list(csv.DictReader(text.splitlines()))


def _read_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = _read_csv(name)
    keys = list(rows[0])
    x = np.array([float(r[keys[0]]) for r in rows])
    y = np.array([float(r[keys[1]]) for r in rows])
    return x, y


def _read_wide(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F table: first column theta (deg), other column headers r (cm)."""
    rows = _read_csv(name)
    r_keys = list(rows[0])[1:]
    theta = np.array([float(r["theta_deg"]) for r in rows])
    radii = np.array([float(k) for k in r_keys])
    values = np.array([[float(r[k]) for k in r_keys] for r in rows])
    return radii, theta, values


@functools.cache
def _catalogue() -> dict[str, SourceModel]:
    aliases_text = resources.files("seedopt.configs").joinpath("sources", "aliases.yaml")
    aliases = {str(k): tuple(v) for k, v in yaml.safe_load(aliases_text.read_text()).items()}
    models: dict[str, SourceModel] = {}
    for row in _read_csv("models.csv"):
        prefix = row["file_prefix"]
        gr, gv = _read_table(f"{prefix}_gL.csv")
        fr, ft, fv = _read_wide(f"{prefix}_F.csv")
        pr, pv = _read_table(f"{prefix}_phian.csv")
        mid = row["model_id"]
        models[mid] = SourceModel(
            model_id=mid,
            description=row["description"],
            dose_rate_constant=float(row["Lambda_cGy_per_h_per_U"]),
            active_length_cm=float(row["L_cm"]),
            half_life_d=float(row["half_life_d"]),
            sk_per_mci=float(row["SK_per_mCi_apparent_U"]),
            gL_r_cm=gr,
            gL=gv,
            F_r_cm=fr,
            F_theta_deg=ft,
            F=fv,
            phi_an_r_cm=pr,
            phi_an=pv,
            report=row["consensus_report"],
            status=row["status"],
            aliases=aliases.get(mid, ()),
        )
    return models


def known_models() -> list[str]:
    """Consensus model ids, in the order of the data file."""
    return list(_catalogue())


def get_model(name: str) -> SourceModel:
    """The consensus model called ``name`` (its id or an alias; case and punctuation ignored)."""
    key = _normalise(name)
    for model in _catalogue().values():
        if key in {_normalise(model.model_id), *(_normalise(a) for a in model.aliases)}:
            return model
    raise SeedoptError(f"unknown source model {name!r}; known models: {', '.join(known_models())}")
