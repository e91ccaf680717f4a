"""CSV tables of points and seeds: the one reader of every seeds, points and implant CSV.

A table has a header row naming its columns: ``x_mm,y_mm,z_mm`` (mm) and, for seeds,
optionally ``ux,uy,uz`` (the needle direction of each seed; all three or none). Other columns
are ignored. What is refused, each with one line naming the file and the line or column:

* text that is not UTF-8 (a UTF-8 byte-order mark, as Excel writes, is accepted), or a file
  larger than ``MAX_CSV_BYTES``;
* a ``;``-separated table (often with decimal commas: Excel in many locales), a row with a
  different number of fields than the header, a column named twice or not at all;
* ``ux``/``uy``/``uz`` given only in part;
* a value that is not a number, not finite, or beyond ``MAX_MM`` (1e5 mm) for a coordinate
  and ``MAX_MAGNITUDE`` for a direction component; a direction of zero length.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config_types import MAX_MAGNITUDE, MAX_MM
from .errors import SeedoptError

MAX_CSV_BYTES = 256 * 2**20
"""Largest CSV file read, bytes."""
XYZ = ("x_mm", "y_mm", "z_mm")
DIRECTION = ("ux", "uy", "uz")
SEMICOLON_HINT = (
    "it looks like a ';'-separated CSV (decimal commas?); save it with ',' between "
    "values and '.' as the decimal point"
)


@dataclass(frozen=True)
class PointTable:
    """The points of a CSV table.

    Attributes
    ----------
    xyz_mm : (n, 3) positions, mm.
    directions : (n, 3) direction of each point (not normalised, never of zero length), or
        None when the table has no ``ux,uy,uz`` columns (or they were not asked for).
    """

    xyz_mm: np.ndarray
    directions: np.ndarray | None


def read_point_table(path: Path, what: str, directions: bool = False) -> PointTable:
    """The ``x_mm,y_mm,z_mm`` (and, with ``directions``, ``ux,uy,uz``) columns of the CSV
    file ``path``; ``what`` names the file in errors ("seeds", "dose points")."""
    where = f"{what} file {path}"
    text = _read_text(Path(path), what, where)
    lines = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(n, row) for n, row in enumerate(lines, start=1) if row]
    except csv.Error as exc:
        raise SeedoptError(f"{where}: not a CSV table ({exc})") from None
    if not rows:
        raise SeedoptError(f"{where} has no header row")
    header_line, raw_header = rows[0]
    header = [name.strip() for name in raw_header]
    if len(header) == 1 and ";" in header[0]:
        raise SeedoptError(f"{where}: {SEMICOLON_HINT}")
    _check_header(header, where)
    body = rows[1:]
    if not body:
        raise SeedoptError(f"{where} has no rows")
    for n, row in body:
        if len(row) != len(header):
            hint = (
                f"; {SEMICOLON_HINT}"
                if any(";" in v for v in row)
                else "; decimal commas? write 1.5, not 1,5"
                if len(row) > len(header)
                else ""
            )
            raise SeedoptError(
                f"{where}: line {n} has {len(row)} values but the header "
                f"(line {header_line}) names {len(header)} columns{hint}"
            )
    index = {name: k for k, name in enumerate(header)}
    xyz = _columns(body, index, XYZ, MAX_MM, " mm", where)
    given = [c for c in DIRECTION if c in index]
    if not directions or not given:
        return PointTable(xyz, None)
    if len(given) < 3:
        missing = ", ".join(c for c in DIRECTION if c not in index)
        raise SeedoptError(
            f"{where}: direction columns {', '.join(given)} without {missing}; give all of "
            "ux,uy,uz or none (default direction +z)"
        )
    axes = _columns(body, index, DIRECTION, MAX_MAGNITUDE, "", where)
    zero = np.flatnonzero(np.linalg.norm(axes, axis=1) <= 1e-12)
    if zero.size:
        raise SeedoptError(
            f"{where}: line {body[zero[0]][0]}: direction (ux, uy, uz) of zero length"
            + (f" ({zero.size} rows)" if zero.size > 1 else "")
        )
    return PointTable(xyz, axes)


def _read_text(path: Path, what: str, where: str) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise SeedoptError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_CSV_BYTES:
        raise SeedoptError(f"{where}: larger than {MAX_CSV_BYTES // 2**20} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedoptError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8 (Excel: CSV UTF-8)"
        ) from None


def _check_header(header: list[str], where: str) -> None:
    unnamed = [k + 1 for k, name in enumerate(header) if not name]
    if unnamed:
        raise SeedoptError(f"{where}: column {unnamed[0]} of the header has no name")
    twice = [name for name, count in Counter(header).items() if count > 1]
    if twice:
        raise SeedoptError(f"{where}: column {twice[0]!r} is given more than once")
    if not set(XYZ) <= set(header):
        raise SeedoptError(f"{where} needs columns x_mm,y_mm,z_mm (found {','.join(header)})")


def _columns(
    body: list[tuple[int, list[str]]],
    index: dict[str, int],
    names: tuple[str, ...],
    limit: float,
    unit: str,
    where: str,
) -> np.ndarray:
    """(n, len(names)) float64 values of the ``names`` columns, each finite and within
    ``limit``; else an error naming the line and column."""
    out = np.empty((len(body), len(names)))
    for i, (n, row) in enumerate(body):
        for j, name in enumerate(names):
            text = row[index[name]].strip()
            try:
                value = float(text)
            except ValueError:
                hint = f"; {SEMICOLON_HINT}" if "," in text or ";" in text else ""
                raise SeedoptError(
                    f"{where}: line {n}, column {name}: {text!r} is not a number{hint}"
                ) from None
            if not np.isfinite(value):
                raise SeedoptError(f"{where}: line {n}, column {name}: {text} is not finite")
            if abs(value) > limit:
                raise SeedoptError(
                    f"{where}: line {n}, column {name}: {value:g}{unit} is out of range "
                    f"(seedopt accepts |value| <= {limit:g}{unit})"
                )
            out[i, j] = value
    return out
