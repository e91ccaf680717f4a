"""Config files as bad input: YAML that repeats keys, alias bombs, other encodings, and numbers
that are booleans, not finite or absurd. Each is refused with one line naming the key (and
line or byte), never planned with a wrong value."""

from __future__ import annotations

import copy
import math
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_cli import one_line_error, seedopt
from test_planning import SMALL

from seedopt.config_types import MAX_MAGNITUDE, MAX_MM
from seedopt.errors import SeedoptError
from seedopt.plan_config import load_plan_spec
from seedopt.safe_yaml import MAX_YAML_BYTES, MAX_YAML_NODES, load_yaml_text
from seedopt.studies.specs import load_variants, parse_levels


def write(tmp_path: Path, config: dict[str, Any] | str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def refusal(path: Path) -> str:
    """The one-line message of loading ``path`` as a plan config (which must fail)."""
    with pytest.raises(SeedoptError) as exc:
        load_plan_spec(path)
    message = str(exc.value)
    assert "\n" not in message
    return message


def numeric_leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every number in ``node`` (nested dicts and lists)."""
    if isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [path]
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    return [p for k, v in items for p in numeric_leaves(v, (*path, k))]


def with_value(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(SMALL)
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def key_pattern(path: tuple[Any, ...]) -> str:
    """The dotted key of ``path`` as it appears in a message (union tags may sit between)."""
    return r"\.(?:\w+\.)?".join(re.escape(str(p)) for p in path) + ":"


def names_key_or_parent(path: tuple[Any, ...], message: str) -> bool:
    """``message`` names the key of ``path`` or one of its parents (an optional value left
    out can make the parent's own check fail)."""
    return any(re.search(key_pattern(path[:k]), message) for k in range(len(path), 0, -1))


LEAVES = numeric_leaves(SMALL)


# YAML --------------------------------------------------------------------------------------


def test_a_repeated_key_is_refused_naming_key_and_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(SMALL, sort_keys=False) + "prescription_gy: 60\n"
    message = refusal(write(tmp_path, text))
    line = text.count("\n")
    first = text.splitlines().index("prescription_gy: 120") + 1
    assert f"line {line}: duplicate key 'prescription_gy' (first given on line {first})" in message


def test_a_repeated_nested_key_is_refused_on_the_command_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(SMALL, sort_keys=False).replace(
        "  target: GTV\n", "  target: GTV\n  target: Cord\n"
    )
    one_line_error(
        seedopt("plan", str(write(tmp_path, text)), "--out", str(tmp_path / "o")),
        r"case\.yaml: line \d+: duplicate key 'target'",
    )


def test_merge_keys_may_still_override() -> None:
    assert load_yaml_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")["c"] == {"x": 1, "y": 3}


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_milliseconds_with_bounded_memory(tmp_path: Path) -> None:
    path = write(tmp_path, billion_laughs())
    tracemalloc.start()
    start = time.perf_counter()
    message = refusal(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f"expands to more than {MAX_YAML_NODES} nodes through its aliases" in message
    assert seconds < 0.5 and peak < 5 * 2**20


def test_shared_aliases_below_the_limit_are_read() -> None:
    data = load_yaml_text(billion_laughs(levels=3))
    assert len(data["a3"]) == 9 and data["a3"][0][0][0] == ["lol"] * 9


def test_an_alias_that_contains_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="line 1: an alias refers to itself"):
        load_yaml_text("a: &x [1, *x]\n")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "a: " + "[" * 20000 + "]" * 20000 + "\n"))
    assert re.search(r"case\.yaml: .*nest(ed too deeply|ing depth)", message), message


def test_an_oversized_document_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    assert "larger than 4 MiB" in refusal(path)


def test_text_that_is_not_utf8_is_refused_naming_the_byte(tmp_path: Path) -> None:
    text = yaml.safe_dump(SMALL, sort_keys=False).replace("a 4 cc target", "a 4 cc tumeur \xe9")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(text.encode("latin-1"))
    offset = text.index("\xe9")
    message = refusal(path)
    assert (
        f"latin1.yaml: not UTF-8 text (byte 0xe9 at offset {offset}); save it as UTF-8" in message
    )


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(SMALL).encode())
    assert load_plan_spec(path).prescription_gy == 120


def test_variants_files_are_read_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, "low: {prescription_gy: 100}\nlow: {prescription_gy: 90}\n", "v.yaml")
    with pytest.raises(SeedoptError, match=r"v\.yaml: line 2: duplicate key 'low'"):
        load_variants(path)


# numbers -----------------------------------------------------------------------------------


def test_the_small_config_has_numbers_everywhere_that_matters() -> None:
    assert len(LEAVES) >= 25 and ("prescription_gy",) in LEAVES


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: ".".join(map(str, p)))
def test_a_boolean_for_any_number_is_refused_naming_the_key(tmp_path: Path, path) -> None:
    message = refusal(write(tmp_path, with_value(path, True)))
    assert re.search(key_pattern(path), message), message


@pytest.mark.parametrize("value", [math.nan, -math.inf, "inf"])
@pytest.mark.parametrize("path", LEAVES, ids=lambda p: ".".join(map(str, p)))
def test_nan_or_infinity_for_any_number_is_refused_naming_the_key(tmp_path, path, value) -> None:
    message = refusal(write(tmp_path, with_value(path, value)))
    assert re.search(key_pattern(path), message), message


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        (("grid", "min_mm", 0), r"grid\.min_mm\.0: 1e\+308 mm is out of range .*<= 100000 mm"),
        (("structures", "GTV", "center_mm", 1), r"center_mm\.1: 1e\+308 mm is out of range"),
        (("approach", "plane_point_mm", 2), r"plane_point_mm\.2: 1e\+308 mm is out of range"),
        (("prescription_gy",), r"prescription_gy: 1e\+308 is out of range .*<= 1e\+06"),
        (("source", "activity_mci"), r"source\.activity_mci: 1e\+308 is out of range"),
    ],
)
def test_absurd_magnitudes_are_refused_with_the_bound(tmp_path: Path, path, pattern) -> None:
    assert re.search(pattern, refusal(write(tmp_path, with_value(path, 1e308))))


def test_a_grid_spacing_below_a_hundredth_of_a_mm_is_refused(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, with_value(("grid", "spacing_mm"), 1e-300)))
    assert "grid.spacing_mm: Input should be greater than or equal to 0.01" in message


def test_a_boolean_prescription_is_refused_on_the_command_line(tmp_path: Path) -> None:
    one_line_error(
        seedopt("plan", str(write(tmp_path, with_value(("prescription_gy",), True))), "--out", "o"),
        r"prescription_gy: expected a number, got a boolean \(true\)",
    )


def accepted_numbers(node: Any) -> list[float]:
    if isinstance(node, dict):
        return [v for x in node.values() for v in accepted_numbers(x)]
    if isinstance(node, list | tuple):
        return [v for x in node for v in accepted_numbers(x)]
    return [node] if isinstance(node, int | float) and not isinstance(node, bool) else []


@given(
    path=st.sampled_from(LEAVES),
    value=st.one_of(
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.text(max_size=8),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
)
def test_any_number_replaced_is_accepted_finite_and_bounded_or_refused_naming_it(
    tmp_path_factory, path, value
) -> None:
    """A random value for any number of the config: the config loads with every number
    finite and within the bounds, or it is refused with one line naming that key."""
    tmp = tmp_path_factory.mktemp("fuzz")
    try:
        spec = load_plan_spec(write(tmp, with_value(path, value)))
    except SeedoptError as exc:
        assert "\n" not in str(exc) and names_key_or_parent(path, str(exc)), str(exc)
        return
    numbers = accepted_numbers(spec.model_dump())
    assert all(math.isfinite(v) and abs(v) <= max(MAX_MAGNITUDE, MAX_MM) for v in numbers)


# sweep ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("nan,120", "every level must be positive, finite"),
        ("100:inf:10", "start, stop and step must be positive, finite"),
        ("100:180:nan", "start, stop and step must be positive, finite"),
        ("1e308", r"at most 1e\+06"),
        ("1:1000:1e-6", "at most 10000"),
        ("100;120", "give start:stop:step"),
    ],
)
def test_sweep_levels_that_are_not_finite_or_absurd_are_refused(text: str, pattern: str) -> None:
    with pytest.raises(SeedoptError, match=pattern):
        parse_levels(text, "--rx")


def test_a_non_finite_strength_sweep_is_refused_on_the_command_line(tmp_path: Path) -> None:
    config = write(tmp_path, SMALL)
    one_line_error(
        seedopt("escalate", str(config), "--rx", "120", "--strength-u", "0.5,inf", "--out", "o"),
        r"--strength-u '0\.5,inf': every level must be positive, finite numbers",
    )
