"""An independent float64 TG-43U1 implementation for cross-checks, written from the report's
formulas and the consensus CSV files read directly (no seedopt code).

G_L uses the end-angle form beta = theta_2 - theta_1 (TG-43U1 eq. 4 and fig. 1), g_L uses
np.interp on the original nodes with log-linear extrapolation beyond the last node, F uses
SciPy's RegularGridInterpolator (bilinear) on the original nodes with r clamped to the table.
"""

from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np
from scipy.interpolate import RegularGridInterpolator

PREFIX = {"6711": "6711", "2301": "2301", "I25.S06": "I25S06", "IAI-125A": "IAI125A"}


def _rows(name: str) -> list[list[str]]:
    text = resources.files("seedopt.configs").joinpath("sources", name).read_text()
    return list(csv.reader(text.splitlines()))


class IndependentTG43:
    def __init__(self, model_id: str) -> None:
        meta = {r[0]: r for r in _rows("models.csv")[1:]}[model_id]
        self.lam = float(meta[4])
        self.L = float(meta[5])
        p = PREFIX[model_id]
        g = np.array(_rows(f"{p}_gL.csv")[1:], dtype=float)
        self.g_r, self.g = g[:, 0], g[:, 1]
        F = _rows(f"{p}_F.csv")
        self.F_r = np.array(F[0][1:], dtype=float)
        self.F_t = np.array([row[0] for row in F[1:]], dtype=float)
        self.F = np.array([row[1:] for row in F[1:]], dtype=float)
        phi = np.array(_rows(f"{p}_phian.csv")[1:], dtype=float)
        self.phi_r, self.phi = phi[:, 0], phi[:, 1]
        self._F = RegularGridInterpolator((self.F_t, self.F_r), self.F)

    def G(self, r: float, theta_deg: float) -> float:
        th = math.radians(theta_deg)
        x, z = r * math.sin(th), r * math.cos(th)
        if x < 1e-12:
            return 1.0 / (r * r - self.L**2 / 4)
        beta = math.atan2(z + self.L / 2, x) - math.atan2(z - self.L / 2, x)
        return beta / (self.L * x)

    def gL(self, r: float) -> float:
        if r > self.g_r[-1]:
            slope = math.log(self.g[-1] / self.g[-2]) / (self.g_r[-1] - self.g_r[-2])
            return self.g[-1] * math.exp(slope * (r - self.g_r[-1]))
        return float(np.interp(r, self.g_r, self.g))

    def Fa(self, r: float, theta_deg: float) -> float:
        t = theta_deg if theta_deg <= 90 else 180 - theta_deg
        rc = min(max(r, self.F_r[0]), self.F_r[-1])
        return float(self._F([[t, rc]])[0])

    def rate_2d(self, r: float, theta_deg: float) -> float:
        """cGy/h/U (TG-43U1 eq. 1)."""
        return (
            self.lam * self.G(r, theta_deg) / self.G(1.0, 90.0) * self.gL(r) * self.Fa(r, theta_deg)
        )

    def rate_1d(self, r: float) -> float:
        """cGy/h/U (TG-43U1 eq. 11, X = L)."""
        phi = float(np.interp(r, self.phi_r, self.phi))
        return self.lam * self.G(r, 90.0) / self.G(1.0, 90.0) * self.gL(r) * phi
