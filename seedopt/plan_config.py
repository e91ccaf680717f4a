"""A plan config: a case (``seedopt.case.config``) plus source, prescription, goals, needle
approach and optimizer. One YAML file; unknown keys and bad values name the key.

Default hard limits (used when ``goals.hard`` is not given) are seedopt's conservative
starting values, not a clinical protocol: spinal cord D0.1cc <= 45 Gy and skin D2cc <= 70 Gy
of the permanent-implant total dose. Set your institution's limits in the config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .candidates.config import CT_KEEPOUT_NEEDS_CT, ApproachSpec
from .case.config import (
    CaseSpec,
    _closest,
    _Strict,
    fold_name,
    format_validation_error,
    read_yaml,
)
from .config_types import Count, Fraction, PositiveReal, Seed
from .errors import SeedoptError
from .metrics import parse_requested_metric
from .optimizer import (
    DEFAULT_OPTIMIZER,
    OPTIMIZERS,
    HardLimit,
    OptimizerOptions,
    SoftWeights,
    optimizer_class,
    parse_options,
)
from .radiobiology import (
    DEFAULT_ALPHA_BETA_GY,
    DEFAULT_REPAIR_HALF_TIME_H,
    Radiobiology,
    Repopulation,
)
from .sources import DEFAULT_HALF_LIFE_D, Source, get_model
from .validation import first_error, nested_error

DEFAULT_CORD_D01CC_GY = 45.0
DEFAULT_SKIN_D2CC_GY = 70.0


class SourceSpec(_Strict):
    model: str = "6711"
    strength_u: PositiveReal | None = Field(None, description="air-kerma strength per seed, U")
    activity_mci: PositiveReal | None = Field(None, description="apparent activity per seed, mCi")
    half_life_d: PositiveReal = DEFAULT_HALF_LIFE_D

    @model_validator(mode="after")
    def _one_strength(self) -> SourceSpec:
        if (self.strength_u is None) == (self.activity_mci is None):
            raise ValueError("give exactly one of strength_u (U) or activity_mci (mCi)")
        return self

    def build(self) -> Source:
        model = get_model(self.model)
        if self.strength_u is not None:
            return Source(model, self.strength_u, self.half_life_d)
        assert self.activity_mci is not None
        return Source.from_activity(model, self.activity_mci, self.half_life_d)


def _numbers_not_booleans(cls: type) -> BeforeValidator:
    """Refuse ``true``/``false`` where ``cls`` (a dataclass) expects a number: pydantic would
    read them as 1 and 0 before the dataclass checks its values."""
    numbers = {f.name for f in dataclasses.fields(cls) if f.type in ("float", float)}

    def check(data: Any) -> Any:
        if isinstance(data, dict):
            for key in numbers & set(data):
                if isinstance(data[key], bool):
                    raise ValueError(f"{key}: expected a number, got {str(data[key]).lower()}")
        return data

    return BeforeValidator(check)


HardLimitSpec = Annotated[HardLimit, _numbers_not_booleans(HardLimit)]
"""A hard limit in ``goals.hard``: validates into the optimizer's ``HardLimit``."""
WeightsSpec = Annotated[SoftWeights, _numbers_not_booleans(SoftWeights)]
"""``goals.weights``: validates into the optimizer's ``SoftWeights`` (its defaults)."""


class GoalsSpec(_Strict):
    hard: list[HardLimitSpec] | None = Field(default=None, description="default: cord and skin")
    weights: WeightsSpec = SoftWeights()
    max_seeds: Count | None = None
    max_needles: Count | None = None


class OptimizerSpec(_Strict):
    """The method by name, its random seed and its options, validated against the method's
    options model (``optimizer/options.py``) when the config is loaded."""

    method: str = Field(default=DEFAULT_OPTIMIZER, description="a registered optimizer")
    seed: Seed = Field(default=0, description="random seed, a whole number >= 0")
    options: dict[str, Any] = Field(
        default_factory=dict, description="options of the method (its Options model)"
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {v!r}; choose one of {', '.join(sorted(OPTIMIZERS))}"
            )
        return v

    @field_validator("options")
    @classmethod
    def _options_of_method(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("method")
        if method is not None:
            try:
                OPTIMIZERS[method].Options.model_validate(v)
            except ValidationError as exc:
                key, message = first_error(exc, OPTIMIZERS[method].Options)
                raise nested_error(key, message) from None
        return v

    def options_for(self, method: str | None = None) -> OptimizerOptions:
        """The options as ``method``'s model (default: this spec's method)."""
        cls = optimizer_class(method or self.method)
        return parse_options(cls.Options, self.options, f"{cls.name} options")


class DoseSpec(_Strict):
    formalism: Literal["2d", "1d"] = "2d"
    storage: Literal["auto", "float32", "float16"] = Field(
        default="auto",
        description="matrix dtype; auto: float32 if it fits twice in free memory, else float16",
    )


class PriorSpec(_Strict):
    """The earlier course of a re-irradiation (docs/radiobiology.md)."""

    dose: Path = Field(description="its DICOM RT Dose (physical dose), relative to the config")
    fractions: Count = Field(description="its number of fractions")
    recovery: Fraction = Field(
        default=0.0,
        description="fraction of the prior EQD2 regarded as recovered (0: none), below 1",
    )

    @field_validator("dose")
    @classmethod
    def _relative_to_config(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return Path(base) / v if base is not None and not v.is_absolute() else v

    @field_validator("recovery")
    @classmethod
    def _below_one(cls, v: float) -> float:
        if v >= 1:
            raise ValueError("recovery must be below 1 (1 would forget the prior course)")
        return v


def _with_default(table: dict[str, float], value: float) -> dict[str, float]:
    return {"default": value, **table}


class RepopulationSpec(_Strict):
    """Tumour repopulation during the implant (``radiobiology.Repopulation``)."""

    alpha_per_gy: PositiveReal = Field(description="the tumour's alpha, per Gy")
    t_pot_days: PositiveReal = Field(description="its potential doubling time, days")


class RadiobiologySpec(_Strict):
    """Per-structure linear-quadratic parameters; ``default`` for the structures not named
    (docs/radiobiology.md gives the defaults' sources)."""

    alpha_beta_gy: dict[str, PositiveReal] = Field(
        default_factory=lambda: {"default": DEFAULT_ALPHA_BETA_GY},
        description="alpha/beta per structure, Gy",
    )
    repair_half_time_h: dict[str, PositiveReal] = Field(
        default_factory=lambda: {"default": DEFAULT_REPAIR_HALF_TIME_H},
        description="half-time of sublethal-damage repair per structure, hours",
    )

    repopulation: dict[str, RepopulationSpec] = Field(
        default_factory=dict,
        description="per tumour structure, its repopulation (none by default)",
    )

    @field_validator("alpha_beta_gy")
    @classmethod
    def _ab_default(cls, v: dict[str, float]) -> dict[str, float]:
        return _with_default(v, DEFAULT_ALPHA_BETA_GY)

    @field_validator("repair_half_time_h")
    @classmethod
    def _repair_default(cls, v: dict[str, float]) -> dict[str, float]:
        return _with_default(v, DEFAULT_REPAIR_HALF_TIME_H)

    def build(self) -> Radiobiology:
        return Radiobiology(
            dict(self.alpha_beta_gy),
            dict(self.repair_half_time_h),
            {k: Repopulation(v.alpha_per_gy, v.t_pot_days) for k, v in self.repopulation.items()},
        )


class PlanSpec(CaseSpec):
    source: SourceSpec
    prescription_gy: PositiveReal
    prescription_quantity: Literal["physical", "eqd2"] = Field(
        default="physical",
        description="prescription_gy is the target's physical D90, or the EQD2 of its D90 "
        "(alpha/beta of the target)",
    )
    prior: PriorSpec | None = Field(default=None, description="the earlier course, if any")
    radiobiology: RadiobiologySpec = RadiobiologySpec()
    approach: ApproachSpec
    goals: GoalsSpec = GoalsSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    dose: DoseSpec = DoseSpec()
    metrics: dict[str, list[str]] = Field(
        default_factory=dict,
        description="extra Dx / Vx per structure, e.g. {GTV: [D98, V120], SpinalCord: [D1cc]}",
    )

    @model_validator(mode="before")
    @classmethod
    def _fold_goal_names(cls, data: Any) -> Any:
        """Goals and metrics name structures case-insensitively."""
        if not (isinstance(data, dict) and isinstance(data.get("structures"), dict)):
            return data
        known = [*data["structures"], "Skin"]
        data = dict(data)
        if isinstance(data.get("metrics"), dict):
            data["metrics"] = {fold_name(k, known): v for k, v in data["metrics"].items()}
        goals = data.get("goals")
        if isinstance(goals, dict) and isinstance(goals.get("hard"), list):
            data["goals"] = {
                **goals,
                "hard": [
                    {**h, "structure": fold_name(h.get("structure"), known)}
                    if isinstance(h, dict)
                    else h
                    for h in goals["hard"]
                ],
            }
        return data

    @model_validator(mode="after")
    def _limit_structures_exist(self) -> PlanSpec:
        known = set(self.structures) | {"Skin"}
        for name, wanted in self.metrics.items():
            if name not in known:
                raise ValueError(
                    f"metrics.{name}: no structure named {name!r}{_closest(name, known)}"
                )
            for k, metric in enumerate(wanted):
                try:
                    parse_requested_metric(metric)
                except ValueError as exc:
                    raise ValueError(f"metrics.{name}.{k}: {exc}") from None
        for k, lim in enumerate(self.goals.hard or []):
            if lim.structure not in known:
                raise ValueError(
                    f"goals.hard.{k}.structure: no structure named "
                    f"{lim.structure!r}{_closest(lim.structure, known)}"
                )
            if lim.quantity == "eqd2_cumulative" and self.prior is None:
                raise ValueError(
                    f"goals.hard.{k}.quantity: eqd2_cumulative needs the prior course "
                    "(prior: {dose: FILE, fractions: N})"
                )
        for table in ("alpha_beta_gy", "repair_half_time_h", "repopulation"):
            for name in getattr(self.radiobiology, table):
                if name != "default" and name not in known:
                    raise ValueError(
                        f"radiobiology.{table}.{name}: no structure named "
                        f"{name!r}{_closest(name, known)}"
                    )
        if "ct_keepout" in self.approach.model_fields_set and (
            self.dicom is None or self.dicom.ct is None
        ):
            raise ValueError(f"approach.{CT_KEEPOUT_NEEDS_CT}")
        return self

    def hard_limits(self, skin_name: str) -> list[HardLimit]:
        """The configured hard limits, or the documented defaults."""
        if self.goals.hard is not None:
            return list(self.goals.hard)
        limits = [HardLimit(skin_name, "D2cc", DEFAULT_SKIN_D2CC_GY)]
        if self.roles.cord:
            limits.insert(0, HardLimit(self.roles.cord, "D0.1cc", DEFAULT_CORD_D01CC_GY))
        return limits

    def with_method(self, method: str | None, where: str = "--method") -> PlanSpec:
        """This spec planned with ``method`` (None: as is), its options validated against
        that method's model before anything is computed."""
        if method is None or method == self.optimizer.method:
            return self
        try:
            optimizer = OptimizerSpec.model_validate(
                {**self.optimizer.model_dump(exclude_unset=True), "method": method}
            )
        except ValidationError as exc:
            raise SeedoptError(
                format_validation_error(exc, where, OptimizerSpec, "optimizer")
            ) from None
        return self.model_copy(update={"optimizer": optimizer})


def load_plan_spec(path: str | Path) -> PlanSpec:
    """Validate a plan config file."""
    data = read_yaml(Path(path))
    try:
        return PlanSpec.model_validate(data, context={"base_dir": Path(path).parent})
    except ValidationError as exc:
        raise SeedoptError(format_validation_error(exc, str(path), PlanSpec)) from None
