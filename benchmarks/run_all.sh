#!/usr/bin/env bash
# Run the performance benchmarks one after another; each prints its table and writes
# benchmarks/results/<name>.json with the machine it ran on.
#
#   benchmarks/run_all.sh           # everything (about 6 minutes on 2 CPU cores)
#   benchmarks/run_all.sh --quick   # toy sizes only (about 1 minute), results in *_quick.json
#
# One torch thread (OMP_NUM_THREADS=1) and offline, so that runs are comparable.
# training_cost reads runs/toy when it exists, else it runs recipes/toy.yaml first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

QUICK=""
case "${1:-}" in
  --quick) QUICK="--quick" ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

for script in switch_latency generation_throughput memory; do
  echo "== $script $QUICK" >&2
  "$PY" "benchmarks/$script.py" $QUICK
done
echo "== training_cost" >&2
if [ -n "$QUICK" ]; then "$PY" benchmarks/training_cost.py --wait 0; else "$PY" benchmarks/training_cost.py; fi
