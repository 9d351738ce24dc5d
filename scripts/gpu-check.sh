#!/usr/bin/env bash
# The GPU checks behind BENCHMARKS.md's GPU figures, on a Linux x64 machine with an NVIDIA GPU:
# the inference test suites with the CUDA provider first, then examples/gpu_report.rs (Silero
# VAD and language models on CUDA vs CPU, run-to-run spread). No network is needed.
#
#   scripts/gpu-check.sh ORT_DIR BIN_DIR OUT_DIR
#
# ORT_DIR: a CUDA build of ONNX Runtime 1.30: libonnxruntime.so.1.30.0,
#   libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so (the capi/ folder of
#   the `onnxruntime-gpu==1.30.0` wheel, built for CUDA 13); the CUDA 13 libraries it needs
#   (cuBLAS, cuDNN 9, cuFFT, cuRAND, the runtime) are found under /opt, /usr/local and /usr/lib
#   (e.g. PyTorch's nvidia-* packages), or must already be on LD_LIBRARY_PATH.
# BIN_DIR: the test binaries built by `cargo test --release --no-run -p lockstep-core --test
#   language_model --test agent_generation --test agent_inference --test inference --test
#   inference_types` (named without their hash suffix) and `gpu_report` (`cargo build
#   --release -p lockstep-core --example gpu_report`). They read models and agents from the
#   checkout they were built in (CARGO_MANIFEST_DIR).
# OUT_DIR: where the log goes.
set -uo pipefail
ort=$(cd "$1" && pwd) bin=$(cd "$2" && pwd) out=$3
mkdir -p "$out"
log="$out/gpu-check.log"
exec > >(tee "$log") 2>&1

libs=""
for name in libcublasLt.so.13 libcublas.so.13 libcudart.so.13 libcurand.so.10 libcufft.so.12 libcudnn.so.9; do
  dir=$(find /opt /usr/local /usr/lib -name "$name" -printf '%h\n' 2>/dev/null | head -1)
  echo "$name: ${dir:-not found}"
  [ -n "$dir" ] && libs="$libs:$dir"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}$libs"
export LOCKSTEP_ORT_LIBRARY="$ort/libonnxruntime.so.1.30.0"
# Kernels load when first used (the default since CUDA 12.2; said here because the checks were
# run with a CUDA provider library holding only sm_90 kernel images).
export CUDA_MODULE_LOADING=LAZY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# The inference suites with CUDA first. `cuda_requested_but_absent_falls_back_to_cpu_and_says_why`
# is skipped: it checks the fallback where there is no GPU.
status=0
for t in language_model agent_generation agent_inference inference inference_types; do
  [ -x "$bin/$t" ] || { echo "== $t: not in $bin, not run"; continue; }
  echo "== $t (LOCKSTEP_TEST_PROVIDERS=cuda,cpu)"
  LOCKSTEP_TEST_PROVIDERS=cuda,cpu "$bin/$t" --skip cuda_requested_but_absent || status=1
done

# The benchmark's larger language model (the same recipe as benches/language-model.mjs).
models=()
for layout in optimum gqa; do
  dir="$out/small_lm_$layout"
  if LM_OUT="$dir" LM_LAYOUT=$layout LM_HIDDEN=256 LM_HEADS=8 LM_LAYERS=8 LM_FF=2048 LM_BENCH_ONLY=1 python3 "$(dirname "$0")/gen-lm.py" >/dev/null; then
    models+=("$dir")
  else
    echo "small_lm ($layout): python3 with onnx and numpy is needed to make it"
  fi
done
# The in-place model with a float16 cache (GroupQueryAttention's CUDA kernels take no float32).
if [ -d "$out/small_lm_gqa" ] && python3 "$(dirname "$0")/lm-f16-cache.py" "$out/small_lm_gqa" "$out/small_lm_gqa_f16" >/dev/null; then
  models+=("$out/small_lm_gqa_f16")
fi
models+=("$(dirname "$0")/../models/tiny_lm_gqa_f16")
# Two processes: the second (tiny models only) shows the spread from process to process.
echo "== gpu_report, process 1"
"$bin/gpu_report" 5 "${models[@]}" || status=1
echo "== gpu_report, process 2"
"$bin/gpu_report" 5 || status=1
rm -rf "$out"/small_lm_*
exit $status
