"""The implant report (``seedopt.implant_report``) drawn twice from one list of blocks: a PDF
of a few A4 landscape pages (matplotlib's ``PdfPages``: tables, the DVH, isodose lines on
slices through the target) and a self-contained HTML page (the same tables; the figures as
PNG embedded in base64; no script, no network)."""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .figures import _pyplot, draw_dvh, draw_slice, target_centre_index
from .implant_report import ImplantReport, Table

PAGE_IN = (11.69, 8.27)
"""A4 landscape, inches."""
MARGIN_IN = 0.45
ROW_IN = 0.2
"""Height of a table row, inches (7.5 pt text)."""
FONT_PT = 7.5
CT_WINDOW_HU = (-300.0, 700.0)
"""Grey scale of the slices: soft tissue to bone (a phantom's body is water, 0 HU)."""
AXIAL_LEVELS = (0.25, 0.5, 0.75)
"""Axial slices at these fractions of the target's extent along z."""

Rect = tuple[float, float, float, float]  # left, bottom, width, height: figure fractions


@dataclass(frozen=True)
class Picture:
    """A figure block: a heading, its height on the page (inches) and how to draw it into a
    rectangle of a matplotlib figure."""

    heading: str
    height_in: float
    draw: Callable[[Any, Rect], None]
    note: str = ""


Block = Table | Picture


def blocks(r: ImplantReport) -> list[Block]:
    """The report in reading order: case, source, goals, needles, DVH, re-irradiation and
    robustness (when present), isodose slices."""
    out: list[Block] = [r.case_table(), r.source_table(), r.goals_table(), r.needle_table()]
    out.append(
        Picture(
            "Dose-volume histogram (DVH)",
            3.6,
            lambda fig, rect: _dvh(fig, rect, r),
            "Cumulative DVH of the permanent-implant total dose from the plan's dose.h5.",
        )
    )
    out += [t for t in (r.reirradiation_table(), r.robustness_table()) if t is not None]
    out.append(
        Picture(
            "Isodose lines on slices through the target",
            6.6,
            lambda fig, rect: _slices(fig, rect, r),
            f"Isodose lines at 50, 100, 150 and 200 % of {r.prescription_gy:g} Gy on the "
            f"{'CT' if r.background is not None else 'phantom (water body)'}; needles projected "
            "(light grey lines), seeds within 5 mm of each slice (dots).",
        )
    )
    return out


def _inset(fig: Any, rect: Rect, pad_in: tuple[float, float, float, float]) -> Rect:
    """``rect`` less a padding (left, bottom, right, top; inches) for labels."""
    w_in, h_in = fig.get_size_inches()
    left, bottom, width, height = rect
    pl, pb, pr, pt = pad_in
    return (
        left + pl / w_in,
        bottom + pb / h_in,
        width - (pl + pr) / w_in,
        height - (pb + pt) / h_in,
    )


def _dvh(fig: Any, rect: Rect, r: ImplantReport) -> None:
    ax = fig.add_axes(_inset(fig, rect, (0.6, 0.45, 3.0, 0.1)))
    draw_dvh(ax, r.case, r.dose_gy, r.prescription_gy, r.plan.spec, r.implanted)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def slice_planes(r: ImplantReport) -> list[tuple[int, int]]:
    """(array axis, index) of the slices shown: axial at ``AXIAL_LEVELS`` of the target's
    extent, then sagittal and coronal through its centre."""
    zs = np.flatnonzero(r.case.masks[r.case.target].any(axis=(1, 2)))
    axial = [(0, int(round(zs[0] + f * (zs[-1] - zs[0])))) for f in AXIAL_LEVELS]
    centre = target_centre_index(r.case)
    return [*axial, (2, int(centre[2])), (1, int(centre[1]))]


def _slices(fig: Any, rect: Rect, r: ImplantReport) -> None:
    left, bottom, width, height = rect
    hu = r.background
    if hu is None:  # a phantom: water in air
        hu = np.where(r.case.masks[r.case.body], 0.0, -1000.0)
    low, high = CT_WINDOW_HU
    background = np.clip((hu - low) / (high - low), 0.0, 1.0)
    needles = [(np.array(n.entry_mm), np.array(n.tip_mm)) for n in r.needles]
    seeds = r.seeds_mm()
    handles: list[Any] = []
    labels: list[str] = []
    for k, (axis, index) in enumerate(slice_planes(r)):
        col, row = k % 3, k // 3
        cell = (left + col * width / 3, bottom + (1 - row) * height / 2, width / 3, height / 2)
        ax = fig.add_axes(_inset(fig, cell, (0.5, 0.4, 0.1, 0.3)))
        draw_slice(
            ax, r.case, r.dose_gy, r.prescription_gy, seeds, needles, axis, index, background
        )
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=6)
        ax.xaxis.label.set_fontsize(7)
        ax.yaxis.label.set_fontsize(7)
        legend = ax.get_legend()
        if legend is not None:
            if not handles:
                handles, labels = legend.legend_handles, [t.get_text() for t in legend.texts]
            legend.remove()
    key = fig.add_axes((left + 2 * width / 3, bottom, width / 3, height / 2))
    key.axis("off")
    key.legend(
        handles, labels, loc="center", fontsize=7, ncol=2, title="lines and points", facecolor="0.6"
    )


# -- the PDF -----------------------------------------------------------------------------


class _Pages:
    """A4 pages filled from the top: blocks go below one another, onto a new page when they
    do not fit (a table continues on the next page)."""

    def __init__(self, pdf: Any, title: str) -> None:
        self.pdf, self.title = pdf, title
        self.fig: Any = None
        self.y_in = 0.0  # from the page's top
        self.count = 0

    def new_page(self) -> None:
        self.finish_page()
        plt = _pyplot()
        self.fig = plt.figure(figsize=PAGE_IN)
        self.count += 1
        self.fig.text(
            MARGIN_IN / PAGE_IN[0], 1 - 0.35 / PAGE_IN[1], self.title, fontsize=12, weight="bold"
        )
        self.fig.text(
            1 - MARGIN_IN / PAGE_IN[0],
            0.25 / PAGE_IN[1],
            f"page {self.count}",
            fontsize=7,
            ha="right",
        )
        self.y_in = 0.6

    def finish_page(self) -> None:
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            _pyplot().close(self.fig)
            self.fig = None

    def room_in(self) -> float:
        return PAGE_IN[1] - MARGIN_IN - self.y_in

    def text(self, line: str, size: float, weight: str = "normal") -> None:
        self.fig.text(
            MARGIN_IN / PAGE_IN[0], 1 - self.y_in / PAGE_IN[1], line, fontsize=size,
            weight=weight, va="top",
        )  # fmt: skip
        self.y_in += size / 72 * 1.5

    def note(self, note: str) -> None:
        for line in textwrap.wrap(note, 190):
            self.text(line, FONT_PT - 0.5)
        self.y_in += 0.08

    def table(self, t: Table) -> None:
        rows = list(t.rows)
        heading = t.heading
        needed = 0.35 + ROW_IN * (len(rows) + 1) + 0.3
        if self.fig is None or needed > self.room_in() and needed <= PAGE_IN[1] - 0.6 - MARGIN_IN:
            self.new_page()  # whole on the next page rather than split
        while True:
            if self.room_in() < 0.4 + 2 * ROW_IN:
                self.new_page()
            fit = max(1, int((self.room_in() - 0.35 - 0.3) / ROW_IN) - 1)
            part, rows = rows[:fit], rows[fit:]
            self.text(heading, 10, "bold")
            self._draw_rows(t.columns, part)
            if not rows:
                break
            heading = f"{t.heading} (continued)"
            self.new_page()
        if t.note:
            self.note(t.note)
        self.y_in += 0.1

    def _draw_rows(self, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        width_in = PAGE_IN[0] - 2 * MARGIN_IN
        height_in = ROW_IN * (len(rows) + 1)
        chars = [max(len(c), *(len(r[k]) for r in rows)) + 2 for k, c in enumerate(columns)]
        ax = self.fig.add_axes(
            (
                MARGIN_IN / PAGE_IN[0],
                1 - (self.y_in + height_in) / PAGE_IN[1],
                width_in / PAGE_IN[0],
                height_in / PAGE_IN[1],
            )
        )
        ax.axis("off")
        table = ax.table(
            cellText=[list(r) for r in rows] or [[""] * len(columns)],
            colLabels=list(columns),
            colWidths=[c / sum(chars) for c in chars],
            cellLoc="left",
            colLoc="left",
            bbox=(0, 0, 1, 1),
        )
        table.auto_set_font_size(False)
        table.set_fontsize(FONT_PT)
        for (row, _), cell in table.get_celld().items():
            cell.set_linewidth(0.3)
            if row == 0:
                cell.set_facecolor("0.9")
                cell.set_text_props(weight="bold")
        self.y_in += height_in + 0.08

    def picture(self, p: Picture) -> None:
        if self.fig is None or self.room_in() < p.height_in + 0.5:
            self.new_page()
        self.text(p.heading, 10, "bold")
        rect = (
            MARGIN_IN / PAGE_IN[0],
            1 - (self.y_in + p.height_in) / PAGE_IN[1],
            1 - 2 * MARGIN_IN / PAGE_IN[0],
            p.height_in / PAGE_IN[1],
        )
        p.draw(self.fig, rect)
        self.y_in += p.height_in + 0.05
        if p.note:
            self.note(p.note)


def _title(r: ImplantReport) -> str:
    return f"Implant report: {r.plan.spec.name}, {r.metrics.target} {r.prescription_gy:g} Gy"


def write_pdf(r: ImplantReport, path: Path) -> int:
    """The report as a PDF at ``path`` (the caller makes it atomic); returns its pages."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    _pyplot()
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": FONT_PT}):
        with PdfPages(path, metadata={"Title": _title(r), "Creator": "seedopt report"}) as pdf:
            pages = _Pages(pdf, _title(r))
            for b in blocks(r):
                if isinstance(b, Table):
                    pages.table(b)
                else:
                    pages.picture(b)
            pages.finish_page()
    return pages.count


# -- the HTML page -----------------------------------------------------------------------

_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; }
th { background: #e6e6e6; }
p.note { color: #333; max-width: 70em; }
img { max-width: 100%; }
"""


def _png(p: Picture) -> str:
    """The picture drawn on a figure of its own, as base64 PNG."""
    plt = _pyplot()
    fig = plt.figure(figsize=(PAGE_IN[0] - 2 * MARGIN_IN, p.height_in))
    try:
        p.draw(fig, (0.0, 0.0, 1.0, 1.0))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(r: ImplantReport, path: Path) -> None:
    """The report as one self-contained HTML page at ``path`` (the caller makes it atomic)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(_title(r))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(_title(r))}</h1>",
    ]
    for b in blocks(r):
        parts.append(f"<h2>{html.escape(b.heading)}</h2>")
        if isinstance(b, Table):
            parts.append(_html_table(b))
        else:
            alt = html.escape(b.heading)
            parts.append(f'<img alt="{alt}" src="data:image/png;base64,{_png(b)}">')
        if b.note:
            parts.append(f'<p class="note">{html.escape(b.note)}</p>')
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
