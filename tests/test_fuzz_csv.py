"""Seeds and points CSV files as bad input (``seedopt.tables``): encodings, separators,
columns, values. Each is read exactly or refused with one line naming the file and the line
or column; nothing is read wrongly in silence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cli import dose_cli, one_line_error, write_csv

from seedopt.config_types import MAX_MAGNITUDE, MAX_MM
from seedopt.errors import SeedoptError
from seedopt.tables import read_point_table


def refused(path: Path, directions: bool = True) -> str:
    with pytest.raises(SeedoptError) as exc:
        read_point_table(path, "seeds", directions=directions)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_plain_table_is_read_exactly(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "s.csv", "x_mm,y_mm,z_mm,ux,uy,uz", ["1.5,-2,3e1,0,0,2", "0,0,0,1,0,0"]
    )
    table = read_point_table(path, "seeds", directions=True)
    np.testing.assert_array_equal(table.xyz_mm, [[1.5, -2, 30], [0, 0, 0]])
    np.testing.assert_array_equal(table.directions, [[0, 0, 2], [1, 0, 0]])


def test_a_byte_order_mark_and_crlf_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfx_mm,y_mm,z_mm\r\n1,2,3\r\n\r\n")
    np.testing.assert_array_equal(read_point_table(path, "seeds").xyz_mm, [[1, 2, 3]])


def test_points_ignore_direction_and_other_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", "label,x_mm,y_mm,z_mm,ux", ["a,1,2,3,0"])
    table = read_point_table(path, "points")
    assert table.directions is None and table.xyz_mm.tolist() == [[1, 2, 3]]


def test_text_that_is_not_utf8_is_refused_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("x_mm,y_mm,z_mm,note\n1,2,3,\xe9\n".encode("latin-1"))
    assert "not UTF-8 text (byte 0xe9 at offset 26); save it as UTF-8" in refused(path)


def test_a_semicolon_table_with_decimal_commas_says_what_it_looks_like(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "de.csv", "x_mm;y_mm;z_mm", ["1,5;2,0;3,25"])
    assert "it looks like a ';'-separated CSV (decimal commas?); save it with ','" in refused(path)


def test_decimal_commas_in_a_comma_table_are_refused_naming_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "dc.csv", "x_mm,y_mm,z_mm", ["1,5,2,0,3,25"])
    message = refused(path)
    assert "line 2 has 6 values but the header (line 1) names 3 columns; decimal commas?" in message


def test_a_semicolon_table_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    seeds = write_csv(tmp_path / "de.csv", "x_mm;y_mm;z_mm", ["1,5;2,0;3,25"])
    one_line_error(dose_cli(seeds, seeds), r"seeds file .*de\.csv: it looks like a ';'-separated")


def test_a_column_given_twice_is_refused_naming_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "x_mm,y_mm,z_mm,y_mm", ["1,2,3,4"])
    assert "column 'y_mm' is given more than once" in refused(path)


def test_an_unnamed_column_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u.csv", "x_mm,y_mm,z_mm,", ["1,2,3,4"])
    assert "column 4 of the header has no name" in refused(path)


@pytest.mark.parametrize(
    "given_columns", [("ux",), ("uy",), ("uz",), ("ux", "uy"), ("ux", "uz"), ("uy", "uz")]
)
def test_direction_columns_given_in_part_are_refused(tmp_path: Path, given_columns) -> None:
    header = ",".join(("x_mm", "y_mm", "z_mm", *given_columns))
    path = write_csv(tmp_path / "p.csv", header, [",".join(["1"] * (3 + len(given_columns)))])
    missing = ", ".join(c for c in ("ux", "uy", "uz") if c not in given_columns)
    message = refused(path)
    assert f"direction columns {', '.join(given_columns)} without {missing}; give all" in message


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_a_value_that_is_not_finite_is_refused_naming_line_and_column(tmp_path, text) -> None:
    path = write_csv(tmp_path / "n.csv", "x_mm,y_mm,z_mm", ["1,2,3", f"4,{text},6"])
    assert f"line 3, column y_mm: {text} is not finite" in refused(path)


def test_an_absurd_coordinate_is_refused_with_the_bound(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "b.csv", "x_mm,y_mm,z_mm", ["1,2,1e308"])
    message = refused(path)
    assert (
        "line 2, column z_mm: 1e+308 mm is out of range (seedopt accepts |value| <= 100000 mm)"
        in message
    )


def test_a_zero_length_direction_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "z.csv", "x_mm,y_mm,z_mm,ux,uy,uz", ["0,0,0,0,0,1", "1,1,1,0,0,0"])
    assert "line 3: direction (ux, uy, uz) of zero length" in refused(path)


@pytest.mark.parametrize(
    ("header", "rows", "pattern"),
    [
        ("", [], "has no header row"),
        ("x_mm,y_mm,z_mm", [], "has no rows"),
        ("x,y,z", ["1,2,3"], "needs columns x_mm,y_mm,z_mm"),
        ("x_mm,y_mm,z_mm", ["1,2"], "line 2 has 2 values but the header"),
        ("x_mm,y_mm,z_mm", ["1,two,3"], "line 2, column y_mm: 'two' is not a number"),
        ("x_mm,y_mm,z_mm", ["1,,3"], "line 2, column y_mm: '' is not a number"),
    ],
)
def test_malformed_tables_are_refused(tmp_path: Path, header, rows, pattern) -> None:
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows]))
    assert pattern in refused(path)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SeedoptError, match=r"cannot read seeds file .*none\.csv: No such file"):
        read_point_table(tmp_path / "none.csv", "seeds")


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["", " ", "1,5", "1;2", '"', "0", "nan", "1e400", "\xe9"]),
    st.text(max_size=4),
)


@given(
    header=st.one_of(
        st.just(["x_mm", "y_mm", "z_mm", "ux", "uy", "uz"]),
        st.just(["x_mm", "y_mm", "z_mm"]),
        st.lists(st.sampled_from(["x_mm", "y_mm", "z_mm", "ux", "uy", "uz", "id", ""]), max_size=8),
    ),
    rows=st.lists(st.lists(cell, max_size=8), max_size=5),
    sep=st.sampled_from([",", ";"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]),
)
def test_any_table_is_read_finite_and_bounded_or_refused_in_one_line(
    tmp_path_factory, header, rows, sep, encoding
) -> None:
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    text = "\n".join(sep.join(r) for r in [header, *rows]) + "\n"
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        return
    try:
        table = read_point_table(path, "seeds", directions=True)
    except SeedoptError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert table.xyz_mm.shape == (len([r for r in rows if r]), 3)
    assert np.all(np.isfinite(table.xyz_mm)) and np.all(np.abs(table.xyz_mm) <= MAX_MM)
    if table.directions is not None:
        assert np.all(np.abs(table.directions) <= MAX_MAGNITUDE)
        assert np.all(np.linalg.norm(table.directions, axis=1) > 0)
    assert not any(math.isnan(v) for v in table.xyz_mm.ravel())
