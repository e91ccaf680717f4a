#!/usr/bin/env bash
# The pictures of the implant report in docs/operating-room.md: the built-in vertebral plan,
# a robustness run of it, its report, every page rendered to PNG (pypdfium2) under docs/images/.
set -euo pipefail
BIN=${BIN:-.venv/bin}
"$BIN/seedopt" plan configs/cases/vertebral.yaml --out out/vertebral --backend cpu >/dev/null || [ $? -eq 3 ]
"$BIN/seedopt" robustness out/vertebral --out out/vertebral-robustness --scenarios 200 --backend cpu >/dev/null
"$BIN/seedopt" report out/vertebral --out out/report/vertebral.pdf \
  --robustness out/vertebral-robustness --implant-date 2026-12-14 --calibration-date 2026-12-01
mkdir -p docs/images
"$BIN/python" - <<'PY'
import pypdfium2 as pdfium

pdf = pdfium.PdfDocument("out/report/vertebral.pdf")
for k in range(len(pdf)):
    image = pdf[k].render(scale=100 / 72).to_pil().convert("RGB")
    image.save(f"docs/images/implant-report-page{k + 1}.png", optimize=True)
    print(f"docs/images/implant-report-page{k + 1}.png")
PY
