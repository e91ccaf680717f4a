"""The implant report's content (``seedopt report``, docs/operating-room.md): what a physicist
takes into the operating room, gathered from a finished plan's folder into one typed
``ImplantReport``; ``seedopt.implant_report_render`` draws it as a PDF and an HTML page.

Needles are listed in insertion order (``insertion_order``): deepest first, ties by template
row then column (or by entry point). Along each needle the seeds are listed from the tip back
towards the entry, with the spacer between consecutive seeds: the distance of their centres
less one seed's length (``SEED_LENGTH_MM``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .candidates.config import FreehandSpec, TemplateSpec
from .case import Case
from .errors import SeedoptError
from .operating_room.hole_map import hole_label
from .plan_dir import PlanDir
from .plan_metrics import Goal, PlanMetrics
from .report import eqd2_rows, goal_status
from .robustness import Implant
from .sources import Source, decay_factor

SEED_LENGTH_MM = 4.5
"""Outer length of an I-125 seed (models 6711, 2301, I25.S06, IAI-125A: 4.5 mm)."""
ON_LINE_TOLERANCE_MM = 0.05
"""Largest distance of a seed centre from its needle's line (plan.json rounds to 1 um)."""
ROBUSTNESS_MATCH_RTOL = 0.01
"""robustness.json belongs to the plan when its planned D90 is the plan's within 1 %."""


@dataclass(frozen=True)
class Table:
    """A table as the report shows it: a heading, column names, rows of text, a note."""

    heading: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class SourceSummary:
    """The seeds: model, strength per seed and in total, on the implant date and, when a
    calibration date is given, on that date (decayed with ``half_life_d``)."""

    model: str
    description: str
    half_life_d: float
    strength_u: float  # per seed on the implant date (the plan's dose assumes it), U
    sk_per_mci: float  # apparent-activity factor, U/mCi
    n_seeds: int
    implant_date: dt.date
    calibration_date: dt.date | None = None

    @property
    def activity_mci(self) -> float:
        """Apparent activity per seed on the implant date, mCi."""
        return self.strength_u / self.sk_per_mci

    @property
    def days_since_calibration(self) -> float | None:
        if self.calibration_date is None:
            return None
        return float((self.implant_date - self.calibration_date).days)

    @property
    def calibration_strength_u(self) -> float | None:
        """Strength per seed on the calibration date that decays to ``strength_u`` by the
        implant date: S_implant = S_cal exp(-ln 2 t / T1/2), t the days between them."""
        t = self.days_since_calibration
        return None if t is None else self.strength_u / decay_factor(t, self.half_life_d)


@dataclass(frozen=True)
class SeedRow:
    """A seed on its needle: distance of its centre back from the tip (mm), its centre
    (x, y, z, mm), and the spacer to the previous (deeper) seed (mm; None for the first)."""

    from_tip_mm: float
    centre_mm: tuple[float, float, float]
    spacer_mm: float | None


@dataclass(frozen=True)
class NeedleRow:
    """A needle as the operating room needs it.

    ``order`` is its place in insertion order (from 1), ``plan_index`` its place in
    plan.json (from 1; the RT Plan's channel number). ``angle_deg`` is the angle between the
    needle and the approach's reference axis (the template's direction, or the freehand
    reference direction). ``depth_mm`` runs from the skin entry to the tip;
    ``template_depth_mm`` from the template plane to the tip (template plans)."""

    order: int
    plan_index: int
    hole: tuple[int, int] | None
    entry_mm: tuple[float, float, float]
    tip_mm: tuple[float, float, float]
    angle_deg: float
    depth_mm: float
    template_depth_mm: float | None
    seeds: tuple[SeedRow, ...]


def _vec(p: np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


def _hole(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (value[0], value[1])
    raise SeedoptError(f"plan.json: {where}: expected [column, row] or null, got {value!r}")


def insertion_order(rows: list[NeedleRow]) -> list[NeedleRow]:
    """``rows`` in insertion order, numbered from 1: deepest first (skin entry to tip,
    to 0.1 mm), ties by template row then column, else by entry point (x, y, z)."""

    def key(r: NeedleRow) -> tuple[float, ...]:
        tie = (r.hole[1], r.hole[0]) if r.hole is not None else r.entry_mm
        return (-round(r.depth_mm, 1), *tie)

    ordered = sorted(rows, key=key)
    return [dataclasses.replace(r, order=k + 1) for k, r in enumerate(ordered)]


def reference_axis(approach: TemplateSpec | FreehandSpec) -> np.ndarray:
    """The approach's reference axis (unit, into the patient): the template's needle
    direction, or the freehand reference direction."""
    if isinstance(approach, TemplateSpec):
        return np.asarray(approach.direction, float)
    return np.asarray(approach.reference_direction, float)


def needle_rows(
    document: dict[str, Any],
    reference: np.ndarray,
    template_plane: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[NeedleRow]:
    """The needles of a plan.json ``document`` in insertion order: angle to ``reference``
    (the approach's axis, a unit vector into the patient), depths, and the seeds from the
    tip back with their spacers. ``template_plane`` (a point and its unit normal, mm) gives
    the depth from the template. A seed off its needle's line, outside the needle or
    overlapping the next one is refused in one line naming it."""
    implant = Implant.from_plan_document(document)  # checks every point
    axis = np.asarray(reference, float)
    rows = []
    for k, n in enumerate(document["needles"]):
        tip, d = implant.tips_mm[k], implant.directions[k]
        entry = np.asarray(n["entry_mm"], float)
        depth = float(np.linalg.norm(tip - entry))
        seeds = implant.seeds_mm[implant.needle_of == k]
        back = (tip - seeds) @ d  # distance of each centre back from the tip, mm
        off = np.linalg.norm(tip - back[:, None] * d - seeds, axis=1) if len(seeds) else back
        where = f"plan.json: needles.{k}"
        if np.any(off > ON_LINE_TOLERANCE_MM):
            raise SeedoptError(f"{where}: a seed lies {off.max():.2f} mm off the needle's line")
        if np.any(back < -ON_LINE_TOLERANCE_MM) or np.any(back > depth + ON_LINE_TOLERANCE_MM):
            raise SeedoptError(f"{where}: a seed lies beyond the needle's tip or entry")
        order = np.argsort(back, kind="stable")
        gaps = np.diff(back[order]) - SEED_LENGTH_MM
        if np.any(gaps < -1e-6):
            raise SeedoptError(
                f"{where}: two seeds' centres are {gaps.min() + SEED_LENGTH_MM:.2f} mm apart, "
                f"less than a seed's length ({SEED_LENGTH_MM:g} mm): they would overlap"
            )
        seed_rows = tuple(
            SeedRow(float(back[j]), _vec(seeds[j]), None if i == 0 else float(gaps[i - 1]))
            for i, j in enumerate(order)
        )
        cos = float(np.clip(d @ axis, -1.0, 1.0))
        template_depth = None
        if template_plane is not None:
            point, normal = template_plane
            template_depth = float((tip - np.asarray(point, float)) @ np.asarray(normal, float))
        rows.append(
            NeedleRow(
                0,
                k + 1,
                _hole(n.get("template_hole"), f"needles.{k}.template_hole"),
                _vec(entry),
                _vec(tip),
                math.degrees(math.acos(cos)),
                depth,
                template_depth,
                seed_rows,
            )
        )
    return insertion_order(rows)


@dataclass(frozen=True)
class Robustness:
    """A robustness.json (``seedopt robustness``): its error model and scenario count, each
    metric's planned value and 5/50/95 % percentiles, each goal's probability."""

    folder: Path
    model: dict[str, Any]
    scenarios: int
    metrics: tuple[tuple[str, float, float, float, float], ...]  # name, planned, 5, 50, 95
    probabilities: tuple[tuple[str, float], ...]
    probability_all_goals: float

    @classmethod
    def load(cls, folder: Path) -> Robustness:
        """DIR/robustness.json, or one error naming what is wrong with it."""
        path = folder / "robustness.json"
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
            metrics = tuple(
                (
                    str(k),
                    float(s["nominal"][k]),
                    *(float(p[q]) for q in ("5", "50", "95")),
                )
                for k, p in s["percentiles"].items()
            )
            return cls(
                folder,
                dict(s["model"]),
                int(s["scenarios"]),
                metrics,  # type: ignore[arg-type]
                tuple((str(k), float(v)) for k, v in s["probability"].items()),
                float(s["probability_all_goals"]),
            )
        except OSError as exc:
            raise SeedoptError(f"--robustness {path}: cannot read it: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SeedoptError(
                f"--robustness {path}: not a seedopt robustness.json ({type(exc).__name__}: {exc})"
            ) from None

    def check_of(self, metrics: PlanMetrics) -> None:
        """Refuse a robustness.json of another plan: its planned target D90 must be the
        plan's (within ``ROBUSTNESS_MATCH_RTOL``; it is recomputed at voxel centres)."""
        planned = dict((m[0], m[1]) for m in self.metrics).get("D90_gy")
        d90 = metrics.target_metrics()["D90_gy"]
        if planned is None or not abs(planned - d90) <= ROBUSTNESS_MATCH_RTOL * abs(d90):
            raise SeedoptError(
                f"--robustness {self.folder}: its planned D90 ({planned}) is not this plan's "
                f"({d90:.1f} Gy): it was run on another plan"
            )


@dataclass(frozen=True)
class ImplantReport:
    """Everything the report shows (module docstring). ``dose_gy`` is the plan's dose.h5
    (Gy, grid shape (z, y, x)); ``background`` the CT in HU on the case's grid (None: a
    phantom, drawn from its structures)."""

    plan: PlanDir
    case: Case
    metrics: PlanMetrics
    dose_gy: np.ndarray
    background: np.ndarray | None
    implanted: Source
    source: SourceSummary
    needles: tuple[NeedleRow, ...]
    robustness: Robustness | None
    made: dt.date

    @property
    def prescription_gy(self) -> float:
        """The physical prescription (the target's D90), Gy: isodose lines are % of it."""
        return self.metrics.prescription_gy

    @property
    def reirradiation(self) -> bool:
        """A re-irradiation plan: a prior course, or EQD2 metrics."""
        return self.plan.spec.prior is not None or bool(eqd2_rows(self.metrics))

    def seeds_mm(self) -> np.ndarray:
        """(n, 3) every seed centre, mm."""
        return np.array([s.centre_mm for n in self.needles for s in n.seeds]).reshape(-1, 3)

    # -- the tables both renderings show ---------------------------------------------

    def case_table(self) -> Table:
        spec, m = self.plan.spec, self.metrics
        t = m.target_metrics()
        rx = f"{m.prescription_gy:g} Gy to the target's D90 (permanent-implant total dose)"
        if spec.prescription_quantity == "eqd2":
            rx = (
                f"EQD2 {spec.prescription_gy:g} Gy of the D90 = {m.prescription_gy:.1f} Gy physical"
            )
        approach = spec.approach
        rows = [
            ("case", f"{spec.name}: {spec.description}" if spec.description else spec.name),
            ("plan", f"{self.plan.folder} (method {m.method})"),
            ("config", f"{self.plan.config}"),
            ("target", f"{m.target}, {t['volume_cc']:.1f} cc"),
            ("prescription", rx),
            ("approach", f"{approach.kind}, reference axis {_xyz(reference_axis(approach), 3)}"),
            ("implant", f"{m.n_seeds} seeds on {m.n_needles} needles"),
            (
                "target coverage",
                f"D90 {t['D90_gy']:.1f} Gy, D100 {t['D100_gy']:.1f} Gy, V100 "
                f"{t['V100_pct']:.1f} %, V150 {t['V150_pct']:.1f} %, V200 {t['V200_pct']:.1f} %",
            ),
            ("indices", ", ".join(f"{k} {v:.2f}" for k, v in m.indices.items())),
            ("report made", self.made.isoformat()),
        ]
        return Table("Case and prescription", ("item", "value"), tuple(rows))

    def source_table(self) -> Table:
        s = self.source
        total = s.n_seeds * s.strength_u
        rows = [
            ("model", f"{s.model} ({s.description})"),
            ("half-life", f"{s.half_life_d:g} d"),
            ("implant date", s.implant_date.isoformat()),
            (
                "per seed on the implant date",
                f"{s.strength_u:.3f} U air-kerma strength = {s.activity_mci:.3f} mCi apparent "
                f"activity ({s.sk_per_mci:.3f} U/mCi)",
            ),
            (
                f"total of {s.n_seeds} seeds on the implant date",
                f"{total:.2f} U = {total / s.sk_per_mci:.2f} mCi",
            ),
        ]
        configured = self.plan.spec.source.build().air_kerma_strength_u
        if not math.isclose(configured, s.strength_u, rel_tol=1e-9):
            rows.append(
                (
                    "the config's strength per seed",
                    f"{configured:.3f} U, scaled by the {self.metrics.method} method to the above",
                )
            )
        cal = s.calibration_strength_u
        if cal is not None:
            assert s.calibration_date is not None
            rows.append(
                (
                    f"per seed on the calibration date {s.calibration_date.isoformat()}",
                    f"{cal:.3f} U = {cal / s.sk_per_mci:.3f} mCi "
                    f"({s.days_since_calibration:g} days before the implant)",
                )
            )
            note = (
                "The plan's dose assumes the strength per seed on the implant date. Strength "
                "and apparent activity decay as exp(-ln 2 t / T1/2): the seeds' certificate "
                f"must read {cal:.3f} U per seed on {s.calibration_date.isoformat()} to give "
                f"{s.strength_u:.3f} U on {s.implant_date.isoformat()}."
            )
        else:
            note = (
                "The plan's dose assumes the strength per seed on the implant date. No "
                "calibration date was given: seeds calibrated on another date must be "
                "decay-corrected to the implant date (exp(-ln 2 t / T1/2); "
                "--calibration-date prints the strength they need)."
            )
        return Table("Source and strength", ("item", "value"), tuple(rows), note)

    def goals_table(self) -> Table:
        rows = tuple((g.name, _value(g), goal_status(g)) for g in self.metrics.goals)
        return Table("Goals", ("goal", "value (Gy)", "verdict"), rows)

    def needle_table(self) -> Table:
        template = any(n.template_depth_mm is not None for n in self.needles)
        columns = (
            "#",
            "plan #",
            "hole" if template else "entry (x, y, z) mm",
            "skin entry (x, y, z) mm" if template else "tip (x, y, z) mm",
            "angle (deg)",
            *(("depth from template (mm)",) if template else ()),
            "skin to tip (mm)",
            "seeds",
            "seed centres back from tip (mm)",
            "spacers (mm)",
        )
        rows = []
        for n in self.needles:
            where = (
                (hole_label(*n.hole) if n.hole else "-", _xyz(n.entry_mm))
                if template
                else (_xyz(n.entry_mm), _xyz(n.tip_mm))
            )
            rows.append(
                (
                    str(n.order),
                    str(n.plan_index),
                    *where,
                    f"{n.angle_deg:.1f}",
                    *((f"{n.template_depth_mm:.1f}",) if n.template_depth_mm is not None else ()),
                    f"{n.depth_mm:.1f}",
                    str(len(n.seeds)),
                    " ".join(f"{s.from_tip_mm:.1f}" for s in n.seeds),
                    " ".join(f"{s.spacer_mm:.1f}" for s in n.seeds[1:]) or "-",
                )
            )
        note = (
            "Insertion order: deepest needle first (skin entry to tip), ties by template row "
            "then column. Seeds from the tip back towards the entry; a spacer is the distance "
            f"between consecutive seed centres less one seed's length ({SEED_LENGTH_MM:g} mm). "
            "Angle: to the approach's reference axis."
        )
        return Table("Needles in insertion order", columns, tuple(rows), note)

    def reirradiation_table(self) -> Table | None:
        if not self.reirradiation:
            return None
        spec = self.plan.spec
        rows = tuple(
            (
                name,
                metric,
                *(
                    f"{values[k]:.1f}" if k in values and math.isfinite(values[k]) else "-"
                    for k in ("physical", "implant", "prior", "cumulative")
                ),
            )
            for name, metric, values in eqd2_rows(self.metrics)
        )
        rb = spec.radiobiology
        prior = spec.prior
        course = (
            f"prior course: {prior.dose.name}, {prior.fractions} fractions, recovery "
            f"{prior.recovery:g}; "
            if prior is not None
            else "no prior course; "
        )
        ab = ", ".join(f"{k} {v:g}" for k, v in rb.alpha_beta_gy.items())
        note = course + f"alpha/beta (Gy): {ab}. EQD2 by Dale (1985), docs/radiobiology.md."
        return Table(
            "Re-irradiation (EQD2)",
            (
                "structure",
                "metric",
                "physical (Gy)",
                "implant EQD2 (Gy)",
                "prior EQD2 (Gy)",
                "cumulative EQD2 (Gy)",
            ),
            rows,
            note,
        )

    def robustness_table(self) -> Table | None:
        r = self.robustness
        if r is None:
            return None
        rows = [
            (name, f"{p:.1f}", f"{a:.1f}", f"{b:.1f}", f"{c:.1f}") for name, p, a, b, c in r.metrics
        ]
        rows += [(f"P({k})", "", "", f"{100 * p:.1f} %", "") for k, p in r.probabilities]
        rows.append(("P(every goal)", "", "", f"{100 * r.probability_all_goals:.1f} %", ""))
        m = r.model
        note = (
            f"{r.scenarios} scenarios, error model {m.get('name')}: tip {m.get('tip_mean_mm')} "
            f"+- {m.get('tip_sd_mm')} mm, angle {m.get('angle_mean_deg')} +- "
            f"{m.get('angle_sd_deg')} deg, seed spacing SD {m.get('spacing_sd_mm')} mm "
            f"({r.folder}/robustness.json; docs/robustness.md)."
        )
        return Table(
            "Robustness under needle errors",
            ("metric", "planned", "5 %", "50 %", "95 %"),
            tuple(rows),
            note,
        )


def _value(g: Goal) -> str:
    return f"{g.value:.1f}" if math.isfinite(g.value) else "n/a"


def _xyz(p: Any, digits: int = 1) -> str:
    return ", ".join(f"{float(v):.{digits}f}" for v in p)


def parse_date(text: str, option: str) -> dt.date:
    """A YYYY-MM-DD date, or one error naming ``option``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SeedoptError(f"{option}: expected a date YYYY-MM-DD, got {text!r}") from None


def ct_on_grid(case: Case, images: Any) -> np.ndarray | None:
    """The case's CT (HU) at its grid's voxel centres (nearest CT voxel; -1000 HU outside
    the CT), or None without a CT."""
    ct = None if images is None else images.ct
    if ct is None:
        return None
    idx = ct.grid.mm_to_index(case.grid.points_mm())
    inside = ct.grid.contains_index(idx)
    out = np.full(len(idx), -1000.0, dtype=np.float32)
    out[inside] = ct.hu[tuple(idx[inside].T)]
    return out.reshape(case.grid.shape)


def read_dose(path: Path, case: Case) -> np.ndarray:
    """dose.h5's dose (Gy), refused unless it lies on ``case``'s grid."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            dose = np.asarray(f["dose_gy"], dtype=np.float32)
            origin = np.asarray(f.attrs["origin_mm"], float)
            spacing = np.asarray(f.attrs["spacing_mm"], float)
    except (OSError, KeyError) as exc:
        raise SeedoptError(f"{path}: cannot read the plan's dose ({exc})") from None
    g = case.grid
    if (
        dose.shape != g.shape
        or not np.allclose(origin, g.origin_mm, atol=1e-6)
        or not np.allclose(spacing, g.spacing_mm, atol=1e-6)
    ):
        raise SeedoptError(
            f"{path}: the dose grid ({dose.shape}, origin {origin.tolist()} mm) is not the "
            f"case's ({g.shape}, origin {list(g.origin_mm)} mm): the config describes another case"
        )
    if not np.all(np.isfinite(dose)):
        raise SeedoptError(f"{path}: the dose holds values that are not finite")
    return dose


def planned_source(plan: PlanDir) -> Source:
    """The seeds the plan's dose was computed with: plan.json's model and strength (the
    ``clinical`` method may scale the config's strength), refused when its model or
    half-life is not the config's."""
    configured = plan.spec.source.build()
    recorded = plan.document.get("source")
    where = f"{plan.folder}/plan.json: source"
    if not isinstance(recorded, dict):
        raise SeedoptError(f"{where}: missing")
    if (
        recorded.get("model") != configured.model.model_id
        or recorded.get("half_life_d") != configured.half_life_d
    ):
        raise SeedoptError(
            f"{where}: model {recorded.get('model')!r}, half-life {recorded.get('half_life_d')} d "
            f"is not the config's ({configured.model.model_id}, {configured.half_life_d:g} d)"
        )
    strength = recorded.get("air_kerma_strength_u")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise SeedoptError(f"{where}: air_kerma_strength_u must be a number, got {strength!r}")
    return Source(configured.model, float(strength), configured.half_life_d)


def gather(
    folder: Path,
    config: Path | None = None,
    robustness: Path | None = None,
    implant_date: dt.date | None = None,
    calibration_date: dt.date | None = None,
) -> ImplantReport:
    """The report of the plan in ``folder`` (on ``config`` when given, else the one its
    plan.json records), with the robustness run in ``robustness`` when given. The implant
    date defaults to today; a calibration date after it is refused."""
    from .pipeline import load_case

    made = dt.date.today()
    implant_date = implant_date or made
    if calibration_date is not None and calibration_date > implant_date:
        raise SeedoptError(
            f"--calibration-date {calibration_date} is after the implant date {implant_date}: "
            "seeds are calibrated before they are implanted"
        )
    plan = PlanDir.load(folder, config)
    metrics_path = folder / "metrics.json"
    try:
        metrics = PlanMetrics.from_json(json.loads(metrics_path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise SeedoptError(f"{metrics_path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise SeedoptError(f"{metrics_path}: not valid JSON ({exc})") from None
    source = planned_source(plan)
    spec = plan.spec
    axis = reference_axis(spec.approach)
    plane = None
    if isinstance(spec.approach, TemplateSpec):
        plane = (np.asarray(spec.approach.plane_point_mm, float), axis)
    needles = needle_rows(plan.document, axis, plane)
    n_seeds = sum(len(n.seeds) for n in needles)
    if n_seeds != metrics.n_seeds or len(needles) != metrics.n_needles:
        raise SeedoptError(
            f"{folder}: plan.json has {n_seeds} seeds on {len(needles)} needles, metrics.json "
            f"{metrics.n_seeds} on {metrics.n_needles}: the folder mixes two plans"
        )
    case, images = load_case(spec)
    dose = read_dose(folder / "dose.h5", case)
    rob = Robustness.load(robustness) if robustness is not None else None
    if rob is not None:
        rob.check_of(metrics)
    summary = SourceSummary(
        source.model.model_id,
        source.model.description,
        source.half_life_d,
        source.air_kerma_strength_u,
        source.model.sk_per_mci,
        n_seeds,
        implant_date,
        calibration_date,
    )
    return ImplantReport(
        plan,
        case,
        metrics,
        dose,
        ct_on_grid(case, images),
        source,
        summary,
        tuple(needles),
        rob,
        made,
    )
