#!/usr/bin/env bash
# One device call of at most 8 minutes, installs included (issue 31): every speed lever measured on the
# GPU, each part under its own timeout, results under $OUT as they come (a part cut short keeps what it
# measured; the table is printed at the end from whatever came back).
#
#   bash ../shared/device/prepare.sh torchao==0.17.0 kernels==0.19.1 pyyaml tomlkit sageattention==1.0.6 pytest-timeout
#   device tool: carry [".device"], command "bash benchmarks/device_check.sh", timeout_s 500
#
# flash-attn-4 is not in the list: its CUTLASS DSL runtime (nvidia-cutlass-dsl-libs-cu13, 92 MB) is over
# the 64 MiB carry limit, so the kernels part reports it unavailable unless the device has it already.
#
# 1. kernels: --attention auto's candidates at the real self-attention shape (48,360 tokens, 40 heads):
#    time, TFLOP/s, error vs fp32 on a slice of the queries;
# 2. forwards: one 40-layer A14B expert forward at 48,360 tokens: SDPA, then compile + the kernel auto
#    picked, fp8 (torchao) + compile + that kernel, compile alone, group offload with and without streams;
# 3. renders at A14B widths (2 layers) through the CLI: offload none (the time outside the transformer),
#    MagCache + compile at 12 steps (forwards skipped per shot, graphs compiled), then the offload modes;
# 4. the projection per mode (COMPUTED from 1-3, the real memory growth and MagCache's published curves).
# RUN_TESTS=1 also runs the test suite in the background (it competes for the GPU: timings then suffer).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
KERNELS_S=${KERNELS_S:-75}
FORWARDS_S=${FORWARDS_S:-275}
RENDERS_S=${RENDERS_S:-100}
CHECK_ARGS=${CHECK_ARGS:-}  # the CPU rehearsal: CHECK_ARGS=--tiny NO_INSTALL=1
started=$(date +%s)

[ -n "${NO_INSTALL:-}" ] || source .device/install.sh || exit 1
# diffusers imports torchao when it is installed; a torchao built for another torch can break that
# import, and then fp8 falls back to layerwise casting rather than taking the whole check down.
if ! python3 -c "import diffusers.models.autoencoders.autoencoder_kl_wan, torchao.quantization" 2>"$OUT/torchao_import.txt"; then
  echo "torchao unusable here (see torchao_import.txt): removed" >&2
  rm -rf /tmp/site/torchao /tmp/site/torchao-*
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
free -g > "$OUT/ram.txt" 2>&1
rm -f "$OUT/parts.txt"

if [ -n "${RUN_TESTS:-}" ]; then
  timeout 420 python3 -m pytest -q -p no:cacheprovider -n 6 --timeout 240 ${TEST_ARGS:-} > "$OUT/pytest.log" 2>&1 &
  tests=$!
fi

part() {  # part NAME SECONDS [gpu_check args...]
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" python3 benchmarks/gpu_check.py $CHECK_ARGS --parts "$name" --out "/tmp/gc-$name" "$@" \
    > "$OUT/$name.txt" 2>&1
  echo "$name: rc $? after $(( $(date +%s) - started )) s" >> "$OUT/parts.txt"
  cp "/tmp/gc-$name/gpu_check.json" "$OUT/gpu_check_$name.json" 2>/dev/null
}
part kernels "$KERNELS_S"
part forwards "$FORWARDS_S"
cp /tmp/gc-forwards/forwards.jsonl "$OUT/forwards.jsonl" 2>/dev/null
part renders "$RENDERS_S" --budget-s $((RENDERS_S - 30))

# One table and projection from the parts that came back (a forwards log stands in for a cut-short part).
joined=()
for f in "$OUT"/gpu_check_kernels.json "$OUT"/gpu_check_forwards.json "$OUT"/gpu_check_renders.json; do
  [ -f "$f" ] && joined+=("$f")
done
[ -f "$OUT/gpu_check_forwards.json" ] || { [ -f "$OUT/forwards.jsonl" ] && joined+=("$OUT/forwards.jsonl"); }
[ ${#joined[@]} -gt 0 ] && python3 benchmarks/gpu_check.py --merge "${joined[@]}" --out "$OUT/joined" > "$OUT/table.txt" 2>&1

if [ -n "${RUN_TESTS:-}" ]; then
  wait "$tests"
  echo "tests: rc $?" >> "$OUT/parts.txt"
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest.log" | tail -20
fi
cat "$OUT/parts.txt"
cat "$OUT/table.txt" 2>/dev/null | tail -60
