#!/usr/bin/env bash
# The prepared device check (issue 17), one command on a GPU machine:
#
#   bash benchmarks/device_check.sh [OUT_DIR]     (default: $OUT when set, else benchmarks/results)
#
# The device machine has no network: seedopt and the packages its image lacks travel as wheels
# in .whl/ (made here by `make device-wheels`). They are installed into a scratch folder put on
# PYTHONPATH, then benchmarks/device_check.py runs every stage (docs/gpu.md says what each
# output means). Where seedopt already imports (this machine's .venv, say) the environment is
# taken as it is, and without a GPU the device stages are skipped with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-benchmarks/results}}
py=${PYTHON:-python3}
if ! "$py" -P -c "import seedopt.optimizer" 2>/dev/null; then
  compgen -G ".whl/*.whl" >/dev/null \
    || { echo "seedopt: error: seedopt does not import and .whl/ holds no wheels (make device-wheels)" >&2; exit 2; }
  site=$(mktemp -d)/site
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
    || { echo "seedopt: error: the carried wheels in .whl/ did not install" >&2; exit 2; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$py" benchmarks/device_check.py --out "$out" "${@:2}"
