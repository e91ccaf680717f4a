#!/usr/bin/env bash
# Wheels for the device check (benchmarks/device_check.sh), made here where PyPI answers: seedopt
# built from this checkout, and the runtime packages the device image lacks (its image has
# NumPy, SciPy, h5py, pandas, matplotlib, PyYAML, click, tqdm, pytest, hypothesis and CuPy;
# Ray is left out: the device check runs no batch). Python 3.12, x86-64, into .whl/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
"$py" -m pip wheel -q --no-deps -w .whl .
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pydicom pydantic pydantic-core annotated-types typing-inspection \
  optuna alembic sqlalchemy colorlog mako greenlet
du -sh .whl
