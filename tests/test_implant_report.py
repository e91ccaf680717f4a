"""The implant report (``seedopt report``, issue 20 part 3): what the operating room gets.

The needle table's depths, angles and spacers are the values worked out by hand on small
needles; insertion order is deepest first; the seeds' strength on a calibration date decays
to the plan's on the implant date as exp(-ln 2 t / T1/2); the PDF has a few pages holding
every section and renders to PNG; the HTML page is self-contained and opens in headless
Chromium without console errors; the re-irradiation table appears for a re-irradiation plan
only, the robustness table when a robustness run is given; bad input is one line.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_planning import SMALL

from seedopt.backend import cpu_backend
from seedopt.cli import main
from seedopt.errors import SeedoptError
from seedopt.export import plan_document, write_dose_h5, write_json
from seedopt.implant_report import SEED_LENGTH_MM, SourceSummary, gather, needle_rows
from seedopt.implant_report_render import blocks, write_pdf
from seedopt.operating_room.hole_map import hole_label
from seedopt.plan_config import PlanSpec, load_plan_spec
from seedopt.planning import plan_case

CASES = Path(__file__).parents[1] / "configs" / "cases"
SECTIONS = (
    "Case and prescription",
    "Source and strength",
    "Goals",
    "Needles in insertion order",
    "Dose-volume histogram (DVH)",
    "Isodose lines on slices through the target",
)
REIRRADIATION = "Re-irradiation (EQD2)"
ROBUSTNESS = "Robustness under needle errors"


def _plan_folder(tmp: Path, config: dict, name: str) -> Path:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    plan = plan_case(load_plan_spec(cfg), cpu_backend())
    folder = tmp / name  # what the report reads of a plan folder (not its figures)
    folder.mkdir()
    write_json(folder / "plan.json", plan_document(plan, cfg))
    write_json(folder / "metrics.json", plan.metrics.to_json())
    write_dose_h5(folder / "dose.h5", plan)
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The small template plan and a robustness run of it."""
    tmp = tmp_path_factory.mktemp("report")
    folder = _plan_folder(tmp, copy.deepcopy(SMALL), "small")
    rc = _seedopt(
        "robustness", str(folder), "--out", str(tmp / "rob"), "--scenarios", "40",
        "--backend", "cpu",
    )  # fmt: skip
    assert rc == 0
    return folder


def _seedopt(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _pdf_text(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(path).pages]


# -- the needle table, by hand -----------------------------------------------------------


def _on(tip: tuple, d: tuple, back: float) -> list[float]:
    """The point ``back`` mm from ``tip`` towards the entry along unit direction ``d``."""
    return [t - back * c for t, c in zip(tip, d, strict=True)]


def test_needle_depths_angles_and_spacers_are_the_hand_values():
    # needle A: entry (0, 0, 0) to tip (0, 30, 40): 50 mm deep, direction (0, 0.6, 0.8),
    # 36.87 deg from the reference axis z (cos = 0.8); seeds 0, 10 and 22 mm back from the
    # tip (listed out of order): spacers 10 - 4.5 = 5.5 and 12 - 4.5 = 7.5 mm.
    # needle B: entry (10, 0, 0) to tip (10, 0, 60): 60 mm, along the axis, one seed.
    tip_a, d_a = (0.0, 30.0, 40.0), (0.0, 0.6, 0.8)
    doc = {
        "needles": [
            {
                "entry_mm": [0, 0, 0],
                "tip_mm": list(tip_a),
                "template_hole": None,
                "seeds_mm": [_on(tip_a, d_a, 22), _on(tip_a, d_a, 0), _on(tip_a, d_a, 10)],
            },
            {
                "entry_mm": [10, 0, 0],
                "tip_mm": [10, 0, 60],
                "template_hole": None,
                "seeds_mm": [[10, 0, 55]],
            },
        ]
    }
    b, a = needle_rows(doc, np.array([0.0, 0.0, 1.0]))
    assert (b.order, b.plan_index, a.order, a.plan_index) == (1, 2, 2, 1)  # deepest first
    assert a.depth_mm == pytest.approx(50.0) and b.depth_mm == pytest.approx(60.0)
    assert a.angle_deg == pytest.approx(36.8699, abs=1e-3) and b.angle_deg == pytest.approx(0.0)
    assert [s.from_tip_mm for s in a.seeds] == pytest.approx([0.0, 10.0, 22.0])
    assert [s.spacer_mm for s in a.seeds[1:]] == pytest.approx([5.5, 7.5])
    assert a.seeds[0].spacer_mm is None and SEED_LENGTH_MM == 4.5
    assert a.seeds[1].centre_mm == pytest.approx((0.0, 24.0, 32.0))
    assert [s.from_tip_mm for s in b.seeds] == pytest.approx([5.0])


def test_template_depth_is_from_the_template_plane_and_ties_go_by_row_then_column():
    # template plane y = -40, needles along +y; three needles 25 mm from skin (y = -24) to
    # tip (y = 1): 41 mm from the template; holes (column, row) (4, 2), (1, 3), (2, 2).
    def needle(hole, x, z):
        return {
            "entry_mm": [x, -24, z],
            "tip_mm": [x, 1, z],
            "template_hole": list(hole),
            "seeds_mm": [[x, 1, z], [x, -9, z]],
        }

    doc = {"needles": [needle((4, 2), 10, 0), needle((1, 3), -5, 5), needle((2, 2), 0, 0)]}
    axis = np.array([0.0, 1.0, 0.0])
    rows = needle_rows(doc, axis, (np.array([0.0, -40.0, 0.0]), axis))
    assert [r.hole for r in rows] == [(2, 2), (4, 2), (1, 3)]
    assert [hole_label(*r.hole) for r in rows] == ["C3", "E3", "B4"]
    assert all(r.template_depth_mm == pytest.approx(41.0) for r in rows)
    assert all(r.depth_mm == pytest.approx(25.0) for r in rows)
    assert all(r.seeds[1].spacer_mm == pytest.approx(10 - 4.5) for r in rows)


@pytest.mark.parametrize(
    ("seeds", "match"),
    [
        ([[0, 0, 40], [0, 0, 37]], "would overlap"),  # centres 3 mm apart < 4.5 mm
        ([[0, 1, 30]], "off the needle's line"),
        ([[0, 0, 45]], "beyond the needle's tip"),
    ],
)
def test_seeds_that_cannot_be_loaded_are_refused(seeds, match):
    doc = {"needles": [{"entry_mm": [0, 0, 0], "tip_mm": [0, 0, 40], "seeds_mm": seeds}]}
    with pytest.raises(SeedoptError, match=match):
        needle_rows(doc, np.array([0.0, 0.0, 1.0]))


# -- strength and decay ------------------------------------------------------------------


def test_the_strength_on_the_calibration_date_decays_to_the_plans_by_the_implant_date():
    s = SourceSummary(
        "6711", "", 59.4, 0.635, 1.270, 10, dt.date(2026, 12, 10), dt.date(2026, 11, 30)
    )
    # by hand: 10 days, S_cal = 0.635 / exp(-ln 2 x 10 / 59.4) = 0.635 x 1.12377 = 0.71359 U
    assert s.days_since_calibration == 10
    assert s.calibration_strength_u == pytest.approx(0.71359, abs=2e-5)
    assert s.calibration_strength_u * math.exp(-math.log(2) * 10 / 59.4) == pytest.approx(0.635)
    assert s.activity_mci == pytest.approx(0.5)


# -- the PDF and the HTML page -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_report(small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "report.pdf"
    rc = _seedopt(
        "report", str(small), "--out", str(out), "--robustness", str(small.parent / "rob"),
        "--implant-date", "2026-12-10", "--calibration-date", "2026-11-30",
    )  # fmt: skip
    assert rc == 0
    return out


def test_the_pdf_has_a_few_pages_with_every_section_and_renders_to_png(small, small_report):
    import pypdfium2 as pdfium
    from PIL import Image

    pages = _pdf_text(small_report)
    assert 3 <= len(pages) <= 6
    text = "\n".join(pages)
    holes = [n["template_hole"] for n in json.loads((small / "plan.json").read_text())["needles"]]
    for column, row in holes:  # each hole as the hole map and the printed template name it
        assert f" {hole_label(column, row)} " in f" {text} ".replace("\n", " ")
    for heading in (*SECTIONS, ROBUSTNESS):
        assert heading in text, heading
    assert REIRRADIATION not in text
    assert "0.714 U" in text and "2026-11-30" in text  # the calibration strength, by hand
    pdf = pdfium.PdfDocument(str(small_report))
    for k in range(len(pdf)):
        png = io.BytesIO()
        pdf[k].render(scale=0.5).to_pil().save(png, format="PNG")
        image = np.asarray(Image.open(png).convert("L"))
        assert image.shape[1] > image.shape[0] > 100  # A4 landscape
        assert image.std() > 5  # not a blank page
    pdf.close()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.sources: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in_h2 = tag == "h2"
        for key in ("src", "href"):
            if key in a:
                self.sources.append(a[key])

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


def test_the_html_page_is_self_contained_with_every_section(small_report):
    from PIL import Image

    text = small_report.with_suffix(".html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.h2 == [*SECTIONS[:5], ROBUSTNESS, SECTIONS[5]]
    assert len(page.sources) == 2 and "<script" not in text
    for src in page.sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()  # a whole PNG, decoded by Pillow
    rest = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in rest and "//" not in rest and "url(" not in rest  # nothing to fetch


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test-tools)")
def test_the_html_page_opens_in_headless_chromium_without_console_errors(small_report):
    page = small_report.with_suffix(".html")
    r = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert [line for line in r.stderr.splitlines() if ":CONSOLE" in line] == []
    for heading in SECTIONS:
        assert heading in r.stdout  # the page chromium built holds every section


# -- re-irradiation, robustness and bad input ---------------------------------------------


def test_the_reirradiation_table_appears_for_a_reirradiation_plan_only(small, tmp_path):
    config = yaml.safe_load((CASES / "vertebral_reirradiation.yaml").read_text())
    config["prior"]["dose"] = str(CASES / "vertebral_reirradiation_prior.dcm")
    config["grid"]["spacing_mm"] = 3.0
    config["optimizer"] = {"method": "anneal", "options": {"iterations": 300, "chains": 8}}
    folder = _plan_folder(tmp_path, config, "reirr")
    report = gather(folder)
    table = report.reirradiation_table()
    assert table is not None and table.rows[0][:2] == ("SpinalCord", "D0.1cc")
    metrics = json.loads((folder / "metrics.json").read_text())
    cumulative = metrics["structures"]["SpinalCord"]["D0.1cc_eqd2_cumulative_gy"]
    assert table.rows[0][5] == f"{cumulative:.1f}"
    write_pdf(report, tmp_path / "r.pdf")
    assert REIRRADIATION in "\n".join(_pdf_text(tmp_path / "r.pdf"))
    assert REIRRADIATION in [b.heading for b in blocks(report)]  # the HTML's sections too
    assert gather(small).reirradiation_table() is None


def test_a_robustness_run_of_another_plan_is_refused(small, tmp_path):
    other = tmp_path / "rob"
    other.mkdir()
    summary = json.loads((small.parent / "rob" / "robustness.json").read_text())
    summary["nominal"]["D90_gy"] *= 1.2
    (other / "robustness.json").write_text(json.dumps(summary))
    with pytest.raises(SeedoptError, match="run on another plan"):
        gather(small, robustness=other)
    assert gather(small, robustness=small.parent / "rob").robustness_table() is not None
    assert gather(small).robustness_table() is None


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--out", "{tmp}/r.txt"], "must end in .pdf"),
        (["--out", "{tmp}/r.pdf", "--implant-date", "10/12/2026"], "expected a date YYYY-MM-DD"),
        (
            [
                "--out",
                "{tmp}/r.pdf",
                "--implant-date",
                "2026-01-01",
                "--calibration-date",
                "2026-02-01",
            ],
            "after the implant date",
        ),  # fmt: skip
        (["--out", "{tmp}/r.pdf", "--robustness", "{tmp}"], "cannot read it"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(small, tmp_path, capsys, extra, match):
    args = [a.format(tmp=tmp_path) for a in extra]
    assert _seedopt("report", str(small), *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seedopt: error:") and match in err[0]
    assert not list(tmp_path.glob("r.*"))


def test_a_missing_plan_folder_is_one_line(tmp_path, capsys):
    assert _seedopt("report", str(tmp_path / "none"), "--out", str(tmp_path / "r.pdf")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plan.json" in err[0]


def test_a_failed_write_leaves_the_previous_report_and_no_half_pair(small, tmp_path, monkeypatch):
    import errno

    from seedopt import implant_report_render

    (tmp_path / "r.pdf").write_bytes(b"previous")

    def full(report, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(implant_report_render, "write_html", full)
    assert _seedopt("report", str(small), "--out", str(tmp_path / "r.pdf")) == 2
    assert (tmp_path / "r.pdf").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pdf"]


def test_the_ct_is_read_at_the_case_grids_voxel_centres():
    from types import SimpleNamespace

    from seedopt.case.grid import Grid
    from seedopt.implant_report import ct_on_grid

    # a CT of 1 mm voxels at x = 0 ... 9 mm whose HU is 100 x (its voxel's x in mm); the
    # case grid's voxels at x = -2, 0.9, 3.8, 6.7, 9.6, 12.5 mm: the nearest CT voxels are
    # none, 1, 4, 7, none (10 is past the last), none: HU -1000 (air) where there is none
    ct_grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (2, 2, 10))
    hu = np.broadcast_to(100.0 * np.arange(10), (2, 2, 10)).astype(np.float32)
    case = SimpleNamespace(grid=Grid((-2.0, 0.0, 0.0), (2.9, 1.0, 1.0), (1, 1, 6)))
    images = SimpleNamespace(ct=SimpleNamespace(grid=ct_grid, hu=hu))
    got = ct_on_grid(case, images)[0, 0]
    assert got.tolist() == [-1000.0, 100.0, 400.0, 700.0, -1000.0, -1000.0]
    assert ct_on_grid(case, None) is None and ct_on_grid(case, SimpleNamespace(ct=None)) is None


def test_a_dicom_plan_is_drawn_on_its_ct(tmp_path):
    from dicom_series import phantom_rois, write_ct, write_rtstruct
    from pydicom.uid import generate_uid

    uids = {"study_uid": generate_uid(), "frame_uid": generate_uid()}
    write_ct(tmp_path / "ct", **uids)  # water cylinder (0 HU) with a gas pocket (-800 HU)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    cfg = str(tmp_path / "case.yaml")
    assert _seedopt(
        "init-case", "--ct", str(tmp_path / "ct"), "--rtstruct", str(rs), "--target", "gtv",
        "--rx", "120", "--margin-mm", "30", "--out", cfg,
    ) == 0  # fmt: skip
    plan = tmp_path / "plan"
    rc = _seedopt("plan", cfg, "--out", str(plan), "--method", "clinical", "--no-cache")
    assert rc in (0, 3)
    report = gather(plan)
    assert report.background is not None
    assert {-1000.0, -800.0, 0.0} <= set(np.unique(report.background).tolist())
    assert "on the CT" in blocks(report)[-1].note  # the isodose slices' caption


def test_a_table_longer_than_a_page_continues_on_the_next_with_every_row(tmp_path):
    from matplotlib.backends.backend_pdf import PdfPages

    from seedopt.implant_report import Table
    from seedopt.implant_report_render import _Pages

    rows = tuple((f"needle-{k:03d}", f"{k * 1.5:.1f}") for k in range(45))
    with PdfPages(tmp_path / "t.pdf") as pdf:
        pages = _Pages(pdf, "long")
        pages.table(Table("Needles in insertion order", ("needle", "depth (mm)"), rows))
        pages.finish_page()
    text = _pdf_text(tmp_path / "t.pdf")
    assert pages.count == len(text) == 2
    assert "Needles in insertion order (continued)" in text[1]
    found = re.findall(r"needle-(\d{3})", "\n".join(text))
    assert found == [f"{k:03d}" for k in range(45)]  # each row once, in order


def test_slices_are_in_radiological_orientation():
    """Axial: anterior (-y, LPS) at the top, the patient's left (+x) on the right; coronal
    and sagittal: superior (+z) up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seedopt.case import Case
    from seedopt.figures import draw_slice

    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    case = Case.from_spec(spec, None)
    dose = np.zeros(case.grid.shape)
    for axis, y_down in ((0, True), (1, False), (2, False)):
        fig, ax = plt.subplots()
        draw_slice(ax, case, dose, 120.0, np.zeros((0, 3)), [], axis, 3)
        assert bool(ax.yaxis_inverted()) is y_down and not ax.xaxis_inverted()
        plt.close(fig)
