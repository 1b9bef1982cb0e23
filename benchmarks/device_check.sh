#!/usr/bin/env bash
# One device call: the GPU checks storymem cannot run on the CPU, ordered by value, each under its own
# timeout, results written under $OUT as they come (a part cut short keeps what it measured).
#
#   bash ../shared/device/prepare.sh torchao==0.17.0 pytest-timeout     # here: wheels into .device/
#   device tool: carry [".device"], command "bash benchmarks/device_check.sh", timeout_s 590
#
# 1. the test suite on the GPU machine (in the background, 6 workers: the tests pin the CPU or are light);
# 2. one full-width A14B expert forward per attention backend and fast mode (benchmarks/gpu_check.py);
# 3. renders through the CLI at A14B widths (2 layers) per offload and fast mode, within a time budget.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
FORWARDS_S=${FORWARDS_S:-270}
RENDERS_S=${RENDERS_S:-170}
TESTS_S=${TESTS_S:-440}
CHECK_ARGS=${CHECK_ARGS:-}  # the CPU rehearsal: CHECK_ARGS=--tiny TEST_ARGS="-k gpu_check" NO_INSTALL=1
TEST_ARGS=${TEST_ARGS:-}

[ -n "${NO_INSTALL:-}" ] || source .device/install.sh || exit 1
# diffusers imports torchao when it is installed; a torchao built for another torch can break that
# import, and then fp8 falls back to layerwise casting rather than taking the whole check down.
if ! python3 -c "import diffusers.models.autoencoders.autoencoder_kl_wan, torchao.quantization" 2>"$OUT/torchao_import.txt"; then
  echo "torchao unusable here (see torchao_import.txt): removed" >&2
  rm -rf /tmp/site/torchao /tmp/site/torchao-*
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
rm -f "$OUT/parts.txt"

timeout "$TESTS_S" python3 -m pytest -v -p no:cacheprovider -n 6 --timeout 240 $TEST_ARGS > "$OUT/pytest.log" 2>&1 &
tests=$!

timeout "$FORWARDS_S" python3 benchmarks/gpu_check.py $CHECK_ARGS --parts forwards --out /tmp/gc-forwards > "$OUT/forwards.txt" 2>&1
echo "forwards: rc $?" >> "$OUT/parts.txt"
cp /tmp/gc-forwards/gpu_check.json "$OUT/gpu_check_forwards.json" 2>/dev/null
cp /tmp/gc-forwards/forwards.jsonl "$OUT/forwards.jsonl" 2>/dev/null

timeout "$RENDERS_S" python3 benchmarks/gpu_check.py $CHECK_ARGS --parts renders --budget-s $((RENDERS_S - 60)) --out /tmp/gc-renders \
  > "$OUT/renders.txt" 2>&1
echo "renders: rc $?" >> "$OUT/parts.txt"
cp /tmp/gc-renders/gpu_check.json "$OUT/gpu_check_renders.json" 2>/dev/null

wait "$tests"
echo "tests: rc $?" >> "$OUT/parts.txt"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest.log" | tail -40
cat "$OUT/parts.txt"
tail -30 "$OUT/forwards.txt"
tail -25 "$OUT/renders.txt"
