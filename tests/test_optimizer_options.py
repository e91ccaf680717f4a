"""Optimizer options: each method's typed model, validated when the config is loaded (before
any matrix is built), naming the key and the closest valid one; the same models behind
``--method``, ``--seed``, batch, escalate and tune."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from seedopt.optimizer import (
    OPTIMIZERS,
    AnnealOptions,
    HybridOptions,
    OptimizerOptions,
    get_optimizer,
)
from seedopt.optimizer.options import describe_options
from seedopt.optimizer.synthetic import synthetic_problem
from test_cli import one_line_error, seedopt
from test_planning import SMALL

from seedopt.errors import SeedoptError
from seedopt.plan_config import PlanSpec, load_plan_spec
from seedopt.studies import make_tasks
from seedopt.studies.specs import anneal_options

DOCS = Path(__file__).resolve().parents[1] / "docs" / "planning.md"


def config(method: str, options: Any, **optimizer: Any) -> dict[str, Any]:
    c = copy.deepcopy(SMALL)
    c["optimizer"] = {"method": method, "options": options, **optimizer}
    return c


def write(tmp_path: Path, data: dict[str, Any], name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def load_error(tmp_path: Path, data: dict[str, Any]) -> str:
    with pytest.raises(SeedoptError) as exc:
        load_plan_spec(write(tmp_path, data))
    assert "\n" not in str(exc.value)
    return str(exc.value)


# the models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_method_has_a_frozen_strict_options_model_with_documented_defaults(name) -> None:
    model = OPTIMIZERS[name].Options
    assert issubclass(model, OptimizerOptions) and model is not OptimizerOptions
    assert model.model_config["extra"] == "forbid" and model.model_config["frozen"]
    defaults = model()
    with pytest.raises(ValidationError):
        defaults.__setattr__(next(iter(model.model_fields)), None)
    assert all(description for _, _, description in describe_options(model))


@pytest.mark.parametrize(
    ("method", "options", "pattern"),
    [
        (
            "anneal",
            {"chainz": 8},
            r"optimizer\.options\.chainz: unknown key \(did you mean 'chains'\?\)",
        ),
        ("anneal", {"chains": 0}, r"optimizer\.options\.chains: .*greater than or equal to 1"),
        (
            "anneal",
            {"iterations": 0},
            r"optimizer\.options\.iterations: .*greater than or equal to 1",
        ),
        (
            "anneal",
            {"iterations": -5},
            r"optimizer\.options\.iterations: .*greater than or equal to 1",
        ),
        ("anneal", {"t0": 0}, r"optimizer\.options\.t0: .*greater than 0"),
        ("anneal", {"t0": -1.0}, r"optimizer\.options\.t0: .*greater than 0"),
        ("anneal", {"p_shift": 2}, r"optimizer\.options\.p_shift: .*less than or equal to 1"),
        ("anneal", {"p_shift": 0.7, "p_swap": 0.7}, r"optimizer\.options: p_shift \+ p_swap"),
        ("anneal", {"t0": 1, "t_end": 2}, r"optimizer\.options: t_end \(2\) must not exceed t0"),
        (
            "anneal",
            {"chains": True},
            r"optimizer\.options\.chains: expected a number, got a boolean",
        ),
        ("anneal", {"iterations": 2.5}, r"optimizer\.options\.iterations: .*valid integer"),
        ("anneal", {"t0": ".inf"}, r"optimizer\.options\.t0: "),
        ("anneal", {"x0": [1, 0]}, r"optimizer\.options\.x0: unknown key"),
        (
            "hybrid",
            {"chains": 8},
            r"optimizer\.options\.chains: unknown key \(did you mean .polish_chains.\?\)",
        ),
        (
            "hybrid",
            {"anneal_options": {"iteration": 5}},
            r"options\.anneal_options\.iteration: unknown key \(did you mean 'iterations'\?\)",
        ),
        (
            "hybrid",
            {"search_rows": 0},
            r"options\.search_rows: .*greater than or equal to 1",
        ),
        (
            "lp",
            {"repair_steps": -1},
            r"optimizer\.options\.repair_steps: .*greater than or equal to 0",
        ),
        (
            "milp",
            {"formulation": "exakt"},
            r"optimizer\.options\.formulation: Input should be 'penalty' or 'exact'",
        ),
        ("milp", {"mip_rel_gap": -0.1}, r"optimizer\.options\.mip_rel_gap: "),
        (
            "milp",
            {"require_d90": "maybe"},
            r"optimizer\.options\.require_d90: Input should be a valid boolean",
        ),
        ("milp", {"time_limit_s": 0}, r"optimizer\.options\.time_limit_s: .*greater than 0"),
        (
            "clinical",
            {"scaling": "dose"},
            r"optimizer\.options\.scaling: Input should be 'count' or 'strength'",
        ),
        (
            "clinical",
            {"needle_spacing_mm": 0},
            r"optimizer\.options\.needle_spacing_mm: .*greater than 0",
        ),
        ("clinical", [1, 2], r"optimizer\.options: Input should be a valid dictionary"),
    ],
)
def test_bad_options_are_refused_at_load_naming_the_key(tmp_path, method, options, pattern) -> None:
    message = load_error(tmp_path, config(method, options))
    assert message.startswith(str(tmp_path / "case.yaml")) and re.search(pattern, message), message


def test_an_unknown_method_is_refused_at_load_naming_the_known_ones(tmp_path: Path) -> None:
    message = load_error(tmp_path, config("simplex", {}))
    assert (
        "optimizer.method: unknown optimizer 'simplex'; "
        "choose one of anneal, clinical, hybrid, lp, milp" in message
    )


@pytest.mark.parametrize("seed", [-1, True, 1.5, "x"])
def test_a_bad_config_seed_is_refused(tmp_path: Path, seed) -> None:
    assert "optimizer.seed: " in load_error(tmp_path, config("anneal", {}, seed=seed))


def test_good_options_load_and_keep_what_was_written(tmp_path: Path) -> None:
    spec = load_plan_spec(write(tmp_path, config("hybrid", {"anneal_options": {"chains": 4}})))
    options = spec.optimizer.options_for()
    assert isinstance(options, HybridOptions)
    # the other annealing options keep hybrid's defaults, not anneal's
    assert options.anneal_options.chains == 4 and options.anneal_options.iterations == 2000
    assert options.anneal_options.t0 == 0.3
    assert spec.optimizer.options == {"anneal_options": {"chains": 4}}


option_names = sorted(
    {n for m in OPTIMIZERS.values() for n in m.Options.model_fields} | {"chainz", "seed", "x0"}
)
option_values = st.one_of(
    st.integers(min_value=-3, max_value=10**4),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["count", "strength", "penalty", "exact", "", "1e3"]),
    st.dictionaries(
        st.sampled_from(["chains", "iterations", "t0", "max_points", "bogus"]),
        st.integers(-2, 50),
        max_size=3,
    ),
)


@given(
    method=st.sampled_from(sorted(OPTIMIZERS)),
    options=st.dictionaries(st.sampled_from(option_names), option_values, max_size=4),
)
def test_any_options_either_validate_or_give_one_line_naming_a_given_key(method, options) -> None:
    data = config(method, options)
    try:
        spec = PlanSpec.model_validate(data)
    except ValidationError as exc:
        from seedopt.validation import format_validation_error

        message = format_validation_error(exc, "case.yaml", PlanSpec)
        assert "\n" not in message
        keys = re.findall(r"optimizer\.options\.(\w+)", message)
        assert (keys and keys[0] in options) or "optimizer.options: " in message, message
        return
    validated = spec.optimizer.options_for()
    assert isinstance(validated, OPTIMIZERS[method].Options)
    assert set(validated.model_fields_set) == set(options)


# where the options are used -------------------------------------------------------------------


def test_solve_validates_keyword_options_too() -> None:
    problem = synthetic_problem(0)
    with pytest.raises(
        SeedoptError, match=r"^anneal options: chains: .*greater than or equal to 1$"
    ):
        get_optimizer("anneal").solve(problem, chains=0)
    with pytest.raises(SeedoptError, match=r"^milp options: chains: unknown key"):
        get_optimizer("milp").solve(problem, chains=4)


def test_a_model_instance_and_its_fields_give_the_same_plan() -> None:
    problem = synthetic_problem(0)
    anneal = get_optimizer("anneal")
    a = anneal.solve(problem, 3, AnnealOptions(chains=4, iterations=200))
    b = anneal.solve(problem, 3, chains=4, iterations=200)
    c = anneal.solve(problem, 3, {"chains": 4}, iterations=200)
    assert a.x.tolist() == b.x.tolist() == c.x.tolist() and a.fun == b.fun == c.fun


@pytest.mark.parametrize(
    ("levels", "chains_per_level", "pattern"),
    [
        ([120.0], 0, "chains_per_level must be a whole number >= 1, not 0"),
        ([120.0], True, "chains_per_level must be a whole number >= 1, not True"),
        ([120.0, float("nan")], 2, "positive, finite prescriptions"),
        ([], 2, "positive, finite prescriptions"),
    ],
)
def test_a_sweep_refuses_bad_levels_and_chain_counts(levels, chains_per_level, pattern) -> None:
    annealer = get_optimizer("anneal")
    with pytest.raises(SeedoptError, match=re.escape(pattern)):
        annealer.sweep(synthetic_problem(0), levels, 0, chains_per_level=chains_per_level)


def test_replace_validates_unlike_model_copy() -> None:
    with pytest.raises(SeedoptError, match=r"iterations: .*greater than or equal to 1"):
        AnnealOptions().replace(iterations=0)
    assert AnnealOptions(chains=3).replace(t0=5.0) == AnnealOptions(chains=3, t0=5.0)


def test_studies_take_the_annealing_options_of_anneal_and_hybrid_configs() -> None:
    anneal = PlanSpec.model_validate(config("anneal", {"t0": 7.0}))
    hybrid = PlanSpec.model_validate(config("hybrid", {"anneal_options": {"t0": 9.0}}))
    milp = PlanSpec.model_validate(config("milp", {"formulation": "exact"}))
    assert anneal_options(anneal).t0 == 7.0 and anneal_options(hybrid).t0 == 9.0
    assert anneal_options(milp) == AnnealOptions()
    assert anneal_options(anneal, iterations=50) == AnnealOptions(t0=7.0, iterations=50)
    with pytest.raises(SeedoptError, match=r"t_end \(1\) must not exceed t0 \(0\.5\)"):
        anneal_options(anneal, t0=0.5, t_end=1.0)


def test_a_method_override_is_validated_against_the_new_method(tmp_path: Path) -> None:
    spec = PlanSpec.model_validate(config("anneal", {"chains": 8}))
    assert spec.with_method("anneal") is spec and spec.with_method(None) is spec
    bare = PlanSpec.model_validate(config("anneal", {}))
    assert bare.with_method("milp").optimizer.method == "milp"
    with pytest.raises(
        SeedoptError, match=r"^--method milp: optimizer\.options\.chains: unknown key"
    ):
        spec.with_method("milp", "--method milp")


def test_batch_checks_every_task_s_method_and_options_before_running(tmp_path: Path) -> None:
    good = write(tmp_path, {**config("anneal", {"chains": 8}), "name": "a"}, "a.yaml")
    with pytest.raises(SeedoptError, match=r"method lp: optimizer\.options\.chains: unknown key"):
        make_tasks([good], methods=("anneal", "lp"))
    with pytest.raises(SeedoptError, match=r"--method simplex: unknown optimizer 'simplex'"):
        make_tasks([good], methods=("simplex",))


# the command line -----------------------------------------------------------------------------


def test_plan_refuses_bad_options_before_building_anything(tmp_path: Path) -> None:
    path = write(tmp_path, config("anneal", {"p_shift": 2}))
    result = seedopt("plan", str(path), "--out", str(tmp_path / "o"))
    one_line_error(result, r"case\.yaml: optimizer\.options\.p_shift: .*less than or equal to 1")
    assert not (tmp_path / "o").exists()


def test_plan_refuses_a_method_whose_options_do_not_fit_before_building(tmp_path: Path) -> None:
    path = write(tmp_path, config("anneal", {"chains": 8}))
    result = seedopt("plan", str(path), "--method", "milp", "--out", str(tmp_path / "o"))
    one_line_error(result, r"--method milp: optimizer\.options\.chains: unknown key")
    assert "planning" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "CONFIG", "--out", "o"],
        ["batch", "CONFIG", "--out", "r.h5"],
        ["escalate", "CONFIG", "--rx", "100", "--out", "o"],
        ["tune", "CONFIG", "--out", "o"],
    ],
)
def test_a_negative_seed_is_refused(tmp_path: Path, command: list[str]) -> None:
    path = write(tmp_path, config("anneal", {}))
    args = [str(path) if a == "CONFIG" else a for a in command]
    one_line_error(
        seedopt(*args, "--seed", "-1"),
        r"Invalid value for '--seed': -1: a seed is a whole number from 0 to 4294967295",
    )


# documentation --------------------------------------------------------------------------------


def test_planning_docs_list_every_option_with_its_default() -> None:
    text = DOCS.read_text()
    section = text[text.index("### Options of each method") :]
    for name, cls in OPTIMIZERS.items():
        block = section[section.index(f"#### `{name}`") :]
        block = block[: block.find("\n#### ", 1)]
        for option, default, _ in describe_options(cls.Options):
            nested = isinstance(cls.Options.model_fields[option].default, BaseModel)
            assert f"| `{option}` |{'' if nested else f' `{default}` |'}" in block, (name, option)
