#!/usr/bin/env bash
# bench/gpu.sh: the full-size UniBiomed bundle on a CUDA GPU, in one call (issue 14 item 7).
# Makes the `full` synthetic checkpoint (random weights, real shapes), converts it to a bf16 bundle,
# builds core + pipeline + bench/infer against the PyTorch LibTorch of the machine
# (TRIAGE_PIPELINE_ONLY), and runs bench/infer at batch 1, 8 and 32, printing slices per second
# split into vision (InternViT) / SAM2 encoder / decode (LLM) / mask stages.
#
# Needs: python3 with torch (CUDA), cmake, a C++ compiler, and the headers the pipeline uses beside
# LibTorch: fmt, nlohmann-json and ICU (headers + libicuuc/libicudata), in DEPS (default .gpu-deps,
# made on a Debian machine by `bench/gpu.sh --prepare`).
# usage: bench/gpu.sh [--prepare] [SLICES] [DTYPE]     (defaults: 64 slices, bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${DEPS:-$PWD/.gpu-deps}
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$DEPS/include" "$DEPS/lib"
  cp -r /usr/include/fmt /usr/include/nlohmann /usr/include/unicode "$DEPS/include/"
  cp -a /usr/lib/x86_64-linux-gnu/libicu{uc,data}.so* "$DEPS/lib/"
  mkdir -p "$DEPS/tokenizer" && cp ../shared/data/tokenizers/qwen2.5/* "$DEPS/tokenizer/"
  echo "gpu.sh: $DEPS ready (carry it to the GPU machine)"
  exit 0
fi
SLICES=${1:-64}
DTYPE=${2:-bf16}
WORK=${WORK:-/tmp/triage-gpu}
mkdir -p "$WORK"
export TRIAGE_TOKENIZER_DIR=${TRIAGE_TOKENIZER_DIR:-$DEPS/tokenizer} PYTHONUNBUFFERED=1 LD_LIBRARY_PATH="$DEPS/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'

# The build (CPU) runs while the checkpoint is made and converted.
( cmake -S . -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DTRIAGE_PIPELINE_ONLY=ON \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DTRIAGE_DEPS_INCLUDE="$DEPS/include" -DICU_ROOT="$DEPS" >"$WORK/cmake.log" 2>&1 &&
  cmake --build "$WORK/build" -j"$(nproc)" --target infer >>"$WORK/cmake.log" 2>&1 ) &
BUILD=$!
t0=$(date +%s)
python3 tools/model/make_synthetic_unibiomed.py "$WORK/ckpt" --size full
t1=$(date +%s)
python3 tools/model/convert_unibiomed.py "$WORK/ckpt" "$WORK/bundle" --dtype "$DTYPE"
t2=$(date +%s)
echo "gpu.sh: synthetic checkpoint $((t1 - t0)) s, conversion ($DTYPE) $((t2 - t1)) s"
if ! wait $BUILD; then tail -40 "$WORK/cmake.log"; exit 1; fi
for batch in 1 8 32; do  # batch 1 on a quarter of the slices: random weights decode to the token limit
  n=$SLICES; [ "$batch" = 1 ] && n=$((SLICES / 4))
  "$WORK/build/bench/infer" --bundle "$WORK/bundle" --device cuda --batch "$batch" --slices "$n" --size 512
done
# A real answer is about a dozen tokens ("It is [SEG]. liver tumor.<|end|>"); random weights never stop.
python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); m["max_new_tokens"] = 16; json.dump(m, open(sys.argv[1], "w"))' "$WORK/bundle/model.json"
echo "gpu.sh: max_new_tokens 16"
"$WORK/build/bench/infer" --bundle "$WORK/bundle" --device cuda --batch 32 --slices "$SLICES" --size 512
nvidia-smi --query-gpu=memory.used --format=csv,noheader || true
