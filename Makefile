# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c 'import hashlib,sys;print(hashlib.sha1(open("pyproject.toml","rb").read()).hexdigest()[:10])')

.PHONY: demo test test-tools wheel-check bench bench-full bench-default bench-convergence bench-matrix bench-reirradiation device-wheels device-check lint clean

$(STAMP):
	$(PYTHON) -c 'import sys; sys.exit("seedopt needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seedopt commission --out out/commissioning
	$(BIN)/seedopt plan configs/cases/vertebral.yaml --out out/vertebral

# The DICOM tests check seedopt's RT Plan / RT Dose with independent tools: dciodvfy (dicom3tools)
# and plastimatch (Debian packages), installed here when missing; chromium opens the implant
# report's HTML page in tests/test_implant_report.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-tools:
	@missing=""; \
	command -v dciodvfy >/dev/null || missing="$$missing dicom3tools"; \
	command -v plastimatch >/dev/null || missing="$$missing plastimatch"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: $(STAMP) test-tools
	$(BIN)/python -m pytest

# A plain (non-editable) install is a working tool: the wheel, installed into a fresh virtual
# environment, runs init-case, plan and evaluate on the DICOM sample (CI runs it after test).
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel-check

# Every method on every case of the benchmark cohort (benchmarks/cohort.py): a JSON file, a
# Markdown report and plots in benchmarks/results/. bench: quick budgets (about 15 min on
# 2 cores); bench-full: the optimizers' default budgets (hours on 2 cores; GPU rows when CuPy
# and a device are usable).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cohort.py --mode quick

bench-full: $(STAMP)
	$(BIN)/python benchmarks/bench_cohort.py --mode full

# Issue 16's evidence: every method at its default options with the plan objective's lower
# bound, judged against the count-scaled rule (goals 1, 3, 4; about 45 min on 2 cores), and
# the convergence study of the default against 16x its budget with 4 seeds (goal 2).
bench-default: $(STAMP)
	$(BIN)/python benchmarks/bench_cohort.py --mode default

bench-convergence: $(STAMP)
	$(BIN)/python benchmarks/bench_convergence.py

bench-matrix: $(STAMP)
	$(BIN)/python benchmarks/bench_matrix.py

# Issue 18: physical-dose plans against cumulative-EQD2 plans of re-irradiation cases (~1 min).
bench-reirradiation: $(STAMP)
	$(BIN)/python benchmarks/bench_reirradiation.py

# Issue 17's prepared device check (docs/gpu.md): device-wheels packs seedopt and what the device
# image lacks into .whl/ (run here, where PyPI answers); device-check runs every GPU stage, or
# skips them with the reason where no GPU is usable.
device-wheels: $(STAMP)
	PYTHON=$(BIN)/python bash benchmarks/device_wheels.sh

device-check: $(STAMP)
	PYTHON=$(BIN)/python bash benchmarks/device_check.sh

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check seedopt kernels optimizer configs tests benchmarks
	$(BIN)/mypy seedopt kernels optimizer

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache
