#!/usr/bin/env bash
# GPU readiness check: FRPO vs GRPO step time (target ratio <= 1.02), tokens/s, peak memory against llm.memplan's
# estimate, one CSFT+PA step, and the 2-process path with 2 GPUs; a randomly initialised Qwen2.5-1.5B-shaped model,
# bf16, LoRA r64 (benchmarks/gpu_check.py says what is measured). Budget: <= 8 minutes on one H200.
#
#   bash benchmarks/gpu_check.sh --fetch-wheels   # on a machine with PyPI: the wheels the GPU image lacks
#   bash benchmarks/gpu_check.sh                  # on the GPU machine (no network): installs them, runs the check
#   bash benchmarks/gpu_check.sh --cpu-smoke      # the same code on a tiny shape on the CPU (the test suite runs it)
#
# The GPU image has torch, transformers, peft and accelerate but not TRL or datasets: they (and datasets' own
# dependencies) are carried as wheels: benchmarks/wheels_big/ (pyarrow, 55 MB) and benchmarks/wheels/ (the rest,
# 16 MB), both git-ignored. One device call carries at most 64 MiB, so the first call carries wheels_big and installs
# it, the second carries wheels and runs this script (the machine keeps what was installed while it stays warm):
#   run(carry=["benchmarks/wheels_big"], command="python3 -m pip install --no-index --no-deps benchmarks/wheels_big/*.whl")
#   run(carry=["benchmarks/wheels"], command="bash benchmarks/gpu_check.sh")
# PYVER (default: this python's X.Y) selects the wheels' Python version for --fetch-wheels (binary wheels must match
# the GPU image's Python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && [ "${1:-}" = "--cpu-smoke" ] && PY=.venv/bin/python
WHEELS=benchmarks/wheels
# the versions this project is tested with (constraints.txt / the CPU venv)
PKGS="trl==1.16.0 datasets==5.2.0 pandas==3.1.1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0
python-dateutil==2.9.0.post0 pytz==2026.6 tzdata==2026.6"
PKGS_BIG="pyarrow==26.0.1"

if [ "${1:-}" = "--fetch-wheels" ]; then
    PYVER=${PYVER:-$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
    for pair in "$WHEELS:$PKGS" "${WHEELS}_big:$PKGS_BIG"; do
        dir=${pair%%:*}; pkgs=${pair#*:}
        mkdir -p "$dir"
        # shellcheck disable=SC2086
        $PY -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d "$dir" $pkgs
        du -sh "$dir"
    done
    exit 0
fi

missing=$($PY - <<'PYEOF'
import importlib.util
print(" ".join(m for m in ("trl", "datasets", "pyarrow", "pandas", "dill", "multiprocess", "xxhash")
               if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
    echo "[gpu_check] installing from $WHEELS (no network): $missing"
    wheels=$(ls "$WHEELS"/*.whl "${WHEELS}_big"/*.whl 2>/dev/null || true)
    [ -n "$wheels" ] || { echo "error: no wheels in $WHEELS(_big); run --fetch-wheels where PyPI is reachable" >&2; exit 2; }
    # shellcheck disable=SC2086
    $PY -m pip install --no-index --no-deps $wheels
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec timeout "${GPU_CHECK_TIMEOUT:-480}" $PY benchmarks/gpu_check.py "$@"
