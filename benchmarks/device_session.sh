#!/usr/bin/env bash
# One device call's worth of checks and timings (benchmarks/RESULTS.md cites these logs).
#   part A: kernel checks of every type, llama-bench-style pp512/pp2048/tg128 on the DeepSeek
#           Coder 33B/6.7B Q4_K_M shapes, the 6.7B mixes' tg128, -ngl 31 on 33B, and the Triton
#           quantizers' byte checks (quick);
#   part B: 6.7B F16 → Q4_K_M quantize on the GPU (bytes checked against the CPU's C path),
#           the file → load → engine path (gpu_engine.py), and the CUDA tests on real hardware.
#   part F: the batch-1 matvec kernels against session 2's (benchmarks/gpu_decode_ab.py), PDL A/B,
#           ncu counters of the 33B gate+up matvec (old, new) where the runtime allows them.
#   part C: the CUDA tests on real hardware, the Q4_K_M benches and the engine path for 6.7B and 33B.
# Run from the repository root on the device: bash benchmarks/device_session.sh A|B|C|D|E
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
if ls .whl/*.whl >/dev/null 2>&1; then   # packages the device image lacks (gguf)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
git log --oneline -1 2>/dev/null
t0=$(date +%s)
run() {  # run LABEL TIMEOUT CMD...: log to $OUT/LABEL.log, print its tail
  local label=$1 limit=$2; shift 2
  echo "=== $label (limit ${limit}s, at $(( $(date +%s) - t0 ))s)"
  timeout "$limit" "$@" > "$OUT/$label.log" 2>&1
  echo "--- $label: rc=$? after $(( $(date +%s) - t0 ))s"
}
case "${1:-A}" in
A)
  run gpu 380 python3 benchmarks/gpu.py --skip check_attention,prefill,breakdown,sweep,sweep_types,decode --out "$OUT"
  grep -E "^\| |copy bandwidth|GPU memory|ERROR|FAIL|Error" "$OUT/gpu.log" | tail -60
  run qcheck 150 python3 scripts/gpu_check_quantize.py --quick
  grep -E "OK|bad|vs torch|GB/s|projected|FAIL|Error|mix" "$OUT/qcheck.log" | tail -45
  ;;
B)
  run profile 80 python3 benchmarks/gpu_profile_prefill.py --n 512
  grep -E "pp512|wall|Self CPU|^ +[a-zA-Z_:]" "$OUT/profile.log" | head -60
  run quantize 150 python3 benchmarks/quantize.py --like deepseek-coder-6.7b --device cuda --check-cpu --threads 16 --out "$OUT"
  grep -vE "^ |^\{|^\}" "$OUT/quantize.log" | tail -12
  run engine 170 python3 benchmarks/gpu_engine.py --out "$OUT"
  grep -vE "^ " "$OUT/engine.log" | tail -40
  export TRITON_INTERPRET=0
  run pytest_gpu 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py
  tail -15 "$OUT/pytest_gpu.log"
  ;;
C)
  export TRITON_INTERPRET=0
  run pytest_gpu 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py
  tail -4 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 150 python3 benchmarks/gpu.py --skip check,check_attention,prefill,sweep,sweep_types,decode,mixes,offload --out "$OUT"
  grep -E "^\| |copy bandwidth|GPU memory|attention|ERROR|Error" "$OUT/bench.log" | tail -24
  run engine 90 python3 benchmarks/gpu_engine.py --out "$OUT"
  grep -vE "^ " "$OUT/engine.log" | grep -v Warning | tail -22
  run engine33 200 python3 benchmarks/gpu_engine.py --like deepseek-coder-33b --out "$OUT/33b"
  grep -vE "^ " "$OUT/engine33.log" | grep -v Warning | tail -22
  ;;
D)
  run attn_ab 100 python3 benchmarks/gpu_attention_ab.py
  cat "$OUT/attn_ab.log" | grep -v Warn | tail -6
  export TRITON_INTERPRET=0
  run pytest_gpu 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py
  tail -3 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 150 python3 benchmarks/gpu.py --skip check,check_attention,prefill,sweep,sweep_types,decode,mixes,offload --out "$OUT"
  grep -E "^\| |copy bandwidth|GPU memory|attention|ERROR|Error" "$OUT/bench.log" | tail -24
  run engine33 150 python3 benchmarks/gpu_engine.py --like deepseek-coder-33b --out "$OUT/33b"
  grep -vE "^ " "$OUT/engine33.log" | grep -v Warning | tail -22
  ;;
E)
  export TRITON_INTERPRET=0
  run pytest_gpu 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py
  tail -4 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 150 python3 benchmarks/gpu.py --skip check,check_attention,prefill,sweep,sweep_types,decode,mixes,offload,breakdown --out "$OUT"
  grep -E "^\| |copy bandwidth|GPU memory|ERROR|Error" "$OUT/bench.log" | tail -16
  run engine 120 python3 benchmarks/gpu_engine.py --out "$OUT"
  grep -vE "^ " "$OUT/engine.log" | grep -v Warning | tail -16
  ;;
F)  # session 3: batch-1 matvec kernels A/B, PDL A/B, hardware counters if ncu can read them
  export TRITON_INTERPRET=0
  run pytest_gpu 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py tests/test_cuda_decode.py
  tail -3 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run ab 330 python3 benchmarks/gpu_decode_ab.py --out "$OUT"
  grep -vE "^ |Warn|warn" "$OUT/ab.log" | tail -60
  run ncu 90 ncu --clock-control none -k regex:_mv_q -c 3 --section SpeedOfLight --section WarpStateStats \
      --section Occupancy --section LaunchStats python3 benchmarks/gpu_ncu_target.py
  grep -E "_mv_q|Throughput|Duration|Stall|Warp Cycles|Achieved Occupancy|Registers|Issued|Eligible|ERR|rror" "$OUT/ncu.log" | head -60
  ;;
G)  # session 3, second call: L2-only weight loads in the sweep, PDL "end", ncu memory tables
  run ab 300 python3 benchmarks/gpu_decode_ab.py --skip breakdown --out "$OUT"
  grep -vE "^ |Warn|warn" "$OUT/ab.log" | tail -50
  run ncu 120 ncu --clock-control none -k regex:_mv_q -c 4 --section SpeedOfLight --section WarpStateStats \
      --section MemoryWorkloadAnalysis_Tables --section SchedulerStats --section Occupancy python3 benchmarks/gpu_ncu_target.py
  grep -E "_mv_q|Throughput|Duration|Warp Cycles|Achieved Occupancy|Hit Rate|Sectors/Req|Wavefront|Eligible|Issued Warp|No Eligible|rror" "$OUT/ncu.log" | head -80
  ;;
H)  # session 3, third call: CUDA tests, PDL repeatability, ggrun bench (it ran with --pdl off and end then; the flag is gone)
  export TRITON_INTERPRET=0
  run pytest_gpu 130 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run pdl 120 python3 benchmarks/gpu_decode_ab.py --skip sweep,decode,breakdown --out "$OUT"
  grep -E "tg128|rror" "$OUT/pdl.log" | tail -6
  for m in deepseek-coder-33b deepseek-coder-6.7b; do
    for pdl in off; do
      run "bench_${m}_$pdl" 110 python3 -m ggrun bench --synthetic $m:Q4_K_M -p 512 -p 2048 -n 128 -ngl 99 -r 3
      grep -E "^\| |rror" "$OUT/bench_${m}_$pdl.log" | tail -4
    done
  done
  ;;
I)  # session 3, fourth call: where PDL results differ (per kernel, eager, graph); the 6.7B mixes' tg128
  run pdlnum 150 python3 benchmarks/gpu_pdl_numerics.py
  grep -E "kernel|decoder|rror" "$OUT/pdlnum.log" | tail -20
  run mixes 200 python3 benchmarks/gpu.py --models 6.7b --skip check,check_attention,bench,sweep,sweep_types,prefill,breakdown,decode,offload --out "$OUT"
  grep -E "^\| |rror" "$OUT/mixes.log" | tail -12
  ;;
J)  # session 3, last call: the shipped kernels and tiles: CUDA tests, ggrun bench for both shapes, the 6.7B mixes
  export TRITON_INTERPRET=0
  run pytest_gpu 130 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run bench 200 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -24
  ;;
K)  # session 4, first call: the row-interleaved Q4_K kernel: CUDA tests, A/B sweep per matrix and per token
  export TRITON_INTERPRET=0
  run pytest_gpu 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run ab 330 python3 benchmarks/gpu_decode_ab.py --skip pdl_repeat,breakdown --out "$OUT"
  grep -vE "^ |Warn|warn" "$OUT/ab.log" | tail -40
  ;;
L)  # session 4, second call: the interleaved kernel's per-matrix sweep (same matrix both layouts), tokens, ncu
  export TRITON_INTERPRET=0
  run pytest_gpu 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py -k "Q4_K or q4k or interleav"
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run ab 300 python3 benchmarks/gpu_decode_ab.py --skip pdl_repeat,breakdown --out "$OUT"
  grep -vE "^ |Warn|warn" "$OUT/ab.log" | tail -40
  run ncu 120 ncu --clock-control none -k regex:_mv_q -c 4 --section SpeedOfLight --section WarpStateStats \
      --section MemoryWorkloadAnalysis_Tables --section Occupancy --section LaunchStats python3 benchmarks/gpu_ncu_target.py
  grep -E "_mv_q|Throughput|Duration|Warp Cycles|Achieved Occupancy|Hit Rate|Sectors/Req|Eligible|Issued Warp|Registers|Block Limit|rror" "$OUT/ncu.log" | head -90
  ;;
M)  # session 4, third call: Q4_K prefetch and the interleaved Q6_K kernel: tests, sweep, tokens (three layouts)
  export TRITON_INTERPRET=0
  run pytest_gpu 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py -k "Q4_K or q4k or Q6_K or q6k or interleav"
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run ab 330 python3 benchmarks/gpu_decode_ab.py --skip pdl_repeat,breakdown --out "$OUT"
  grep -vE "^ |Warn|warn" "$OUT/ab.log" | tail -45
  ;;
N)  # session 4, last call: the shipped interleaved kernels and tiles: CUDA tests, ggrun bench for both shapes, the 6.7B mixes
  export TRITON_INTERPRET=0
  run pytest_gpu 250 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py -k "not test_matvec_configs and not test_matvec_batch1"
  grep -E "passed|failed|Error" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  run bench 300 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -24
  ;;
O)  # session 4, after N: interleaved dequantization 4 rows per program (prefill): CUDA dequant tests, the Q4_K_M benches
  export TRITON_INTERPRET=0
  run pytest_gpu 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py -k "dequantize or stacked or backend"
  unset TRITON_INTERPRET
  run bench 200 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload,mixes --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -12
  ;;
P)  # session 4, last: the row-major batch-1 kernels removed: CUDA tests, the Q4_K_M benches
  export TRITON_INTERPRET=0
  run pytest_gpu 170 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_triton_kernels.py \
      -k "not test_matvec_configs and not row_alignment"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 80 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload,mixes --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -12
  ;;
Q)  # session 4, the very last: split-K summed in slice order by the last slice (no atomic float adds)
  export TRITON_INTERPRET=0
  run pytest_gpu 70 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py \
      -k "split_k or decode_attention_splits or (interleaved and Q6_K and 1)"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench33 60 python3 -m ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 512 -n 128 -ngl 99 -r 2
  grep -E "^\| |rror" "$OUT/bench33.log" | tail -4
  ;;
R)  # session 5, first call: fused decode launches (tests, A/B per token), PDL "end" bisected per call site
  export TRITON_INTERPRET=0
  run pytest_gpu 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_triton_kernels.py \
      -k "swiglu or pair or quantized_output or fused_launches or interleaved or split_k or decode_attention or backend or graph"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run fusion 400 python3 benchmarks/gpu_fusion_ab.py --out "$OUT"
  grep -vE "Warn|warn" "$OUT/fusion.log" | tail -70
  ;;
S)  # session 5, second call: the new tests alone; each fusion and PDL "end" per token; the pair launch's tile
  export TRITON_INTERPRET=0
  run pytest_gpu 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py \
      -k "swiglu or pair or quantized_output or fused_launches"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run fusion 400 python3 benchmarks/gpu_fusion_ab.py --skip bisect --out "$OUT"
  grep -vE "Warn|warn" "$OUT/fusion.log" | tail -70
  ;;
T)  # session 5, third call: PDL "end" on by default: CUDA tests; the gate/up launch's swiglu in one program per
   # pair; tiles tuned per matrix on whole-token t/s under PDL
  export TRITON_INTERPRET=0
  run pytest_gpu 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py -k "swiglu or pair or quantized_output or fused_launches or graph or backend or split_k or decode"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run fusion 380 python3 benchmarks/gpu_fusion_ab.py --skip pdl_unfused,bisect --short --out "$OUT"
  grep -vE "Warn|warn" "$OUT/fusion.log" | tail -90
  ;;
U)  # session 5, last call: the shipped tree (fused launches, PDL "end", call T's tiles): CUDA tests, the Q4_K_M
   # benches of both shapes and the 6.7B mixes (fresh processes), 33B tg128 with PDL off beside it
  export TRITON_INTERPRET=0
  run pytest_gpu 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py tests/test_kernel_layouts.py -k "not test_matvec_configs and not row_alignment"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 320 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -24
  run bench33_pdl_off 60 env GGRUN_PDL=off python3 -m ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 0 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench33_pdl_off.log" | tail -3
  ;;
V)  # session 5, the very last: V tiles loaded beside K tiles in decode attention, GraphSteps fed from pinned host
   # memory: the CUDA tests of what changed, ggrun bench tg128 of both shapes, then the rest of the CUDA tests
  export TRITON_INTERPRET=0
  run pytest_gpu 140 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py -k "attention or graph or backend or fused or swiglu or pair"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench33 90 python3 -m ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 0 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench33.log" | tail -3
  run bench67 60 python3 -m ggrun bench --synthetic deepseek-coder-6.7b:Q4_K_M -p 0 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench67.log" | tail -3
  export TRITON_INTERPRET=0
  run pytest_rest 170 python3 -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py tests/test_kernel_layouts.py \
      -k "not (attention or graph or backend or fused or swiglu or pair) and not test_matvec_configs and not row_alignment"
  tail -3 "$OUT/pytest_rest.log"
  ;;
W)  # session 5, after V: decode attention's prologue without branches (q, k, v, cos, sin loaded together after
   # the position): the Q4_K_M benches of both shapes as gpu.py runs them, then the CUDA tests of what changed
  run bench33 60 python3 -m ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 512 -p 2048 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench33.log" | tail -4
  run bench67 40 python3 -m ggrun bench --synthetic deepseek-coder-6.7b:Q4_K_M -p 512 -p 2048 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench67.log" | tail -4
  export TRITON_INTERPRET=0
  run pytest_gpu 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py -k "attention or graph or backend or fused"
  tail -2 "$OUT/pytest_gpu.log"
  ;;
X)  # session 6, first call: loads before the PDL wait, the greedy step in one launch, decode attention's 128-position
   # tile: their CUDA tests, the A/B per change (gpu_early_ab.py), the output matrix's tile; ggrun bench 33B after
  export TRITON_INTERPRET=0
  run pytest_gpu 170 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_triton_kernels.py \
      -k "attention or argmax or quantize_x or fused or graph or backend or decode"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run early 300 python3 benchmarks/gpu_early_ab.py --out "$OUT"
  grep -vE "Warn|warn" "$OUT/early.log" | tail -60
  run bench33 60 python3 -m ggrun bench --synthetic deepseek-coder-33b:Q4_K_M -p 512 -n 128 -ngl 99 -r 3
  grep -E "^\| |rror" "$OUT/bench33.log" | tail -3
  ;;
Y)  # session 6, second call: call X's changes with decode attention's tile by grid size (_block_t): the CUDA tests,
   # the Q4_K_M benches of both shapes and the 6.7B mixes (gpu.py), and session 5's tree (c9c4d68) beside them
  export TRITON_INTERPRET=0
  run pytest_gpu 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda_decode.py tests/test_kv_cache_types_gpu.py \
      tests/test_triton_kernels.py -k "attention or argmax or quantize_x or fused or graph or backend or decode"
  tail -2 "$OUT/pytest_gpu.log"
  unset TRITON_INTERPRET
  run bench 240 python3 benchmarks/gpu.py --skip check,check_attention,sweep,sweep_types,prefill,breakdown,decode,offload --out "$OUT"
  grep -E "^\| |rror" "$OUT/bench.log" | tail -24
  mkdir -p /tmp/s5 && git archive c9c4d68 | tar -x -C /tmp/s5
  for m in 33b 6.7b; do
    (cd /tmp/s5 && run bench_s5_$m 60 env PYTHONPATH=/tmp/site:/tmp/s5 python3 -m ggrun bench --synthetic deepseek-coder-$m:Q4_K_M -p 0 -n 128 -ngl 99 -r 3)
    grep -E "^\| |rror" "$OUT/bench_s5_$m.log" | tail -1
    run bench_new_$m 60 python3 -m ggrun bench --synthetic deepseek-coder-$m:Q4_K_M -p 0 -n 128 -ngl 99 -r 3
    grep -E "^\| |rror" "$OUT/bench_new_$m.log" | tail -1
  done
  ;;
Z)  # session 6, third call: how much of X-Y's gain is the RMSNorm's one-step sum of squares (33B rows of 7168);
   # the user's path (a GGUF file, ggrun bench -m: the engine's GraphSteps) on the 6.7B shape
  run ssq 120 python3 benchmarks/gpu_early_ab.py --skip steps,output --shapes deepseek-coder-33b --out "$OUT"
  grep -vE "Warn|warn" "$OUT/ssq.log" | tail -6
  run engine 330 python3 benchmarks/gpu_engine.py --like deepseek-coder-6.7b --out "$OUT"
  grep -E "^\| |GB|tokens|rror|match|t/s" "$OUT/engine.log" | tail -30
  ;;
Z2)  # session 6, fourth call: the user's path again, now that synth's placeholder vocab has its merges key (call Z
    # stopped there): 6.7B, then 33B
  for m in 6.7b 33b; do
    run engine_$m 260 python3 benchmarks/gpu_engine.py --like deepseek-coder-$m --work /tmp/ggrun-engine-$m --out "$OUT/$m"
    grep -E "^\| |GB|tokens|rror|match|t/s" "$OUT/engine_$m.log" | tail -24
    rm -rf /tmp/ggrun-engine-$m
  done
  ;;
AA)  # session 6, last call: the tree to commit (the engine's logits on the host, synth's placeholder merges):
    # whether the sampler ever took a GPU's logits (session 5's engine handed them over), the CUDA tests, the user's path
  python3 - <<'PY' 2>&1 | tail -2
import torch
from ggrun.sampling import SamplingParams, make_sampler
s = make_sampler(SamplingParams(temperature=0.7, top_k=40, top_p=0.95, repeat_penalty=1.1, seed=1))
try:
    print("sampler on CUDA logits:", s(torch.randn(32256, device="cuda"), [1, 2, 3]))
except Exception as e:
    print("sampler on CUDA logits:", type(e).__name__, str(e)[:160])
PY
  export TRITON_INTERPRET=0
  run pytest_gpu 300 python3 -m pytest -o addopts= -q -x -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py tests/test_kernel_layouts.py \
      -k "not test_matvec_configs and not row_alignment"
  grep -E "passed|failed|^FAILED|^ERROR" "$OUT/pytest_gpu.log" | tail -4
  unset TRITON_INTERPRET
  for m in 6.7b 33b; do
    run engine_$m 200 python3 benchmarks/gpu_engine.py --like deepseek-coder-$m --work /tmp/ggrun-engine-$m --out "$OUT/$m"
    grep -E "^\| |GB|tokens|rror|match|t/s" "$OUT/engine_$m.log" | tail -24
    rm -rf /tmp/ggrun-engine-$m
  done
  ;;
AB)  # session 6, after AA: GraphSteps hands the device logits over again (the engine copies them to the host), the
    # loader's warm-up run: the CUDA tests, then the user's path on the 33B shape
  export TRITON_INTERPRET=0
  run pytest_gpu 330 python3 -m pytest -o addopts= -q -x -p no:cacheprovider tests/test_cuda_decode.py \
      tests/test_kv_cache_types_gpu.py tests/test_triton_kernels.py tests/test_kernel_layouts.py \
      -k "not test_matvec_configs and not row_alignment"
  grep -E "passed|failed|^FAILED|^ERROR" "$OUT/pytest_gpu.log" | tail -4
  unset TRITON_INTERPRET
  run engine_33b 150 python3 benchmarks/gpu_engine.py --like deepseek-coder-33b --work /tmp/ggrun-engine-33b --out "$OUT/33b"
  grep -E "^\| |GB|tokens|rror|match|t/s" "$OUT/engine_33b.log" | tail -24
  ;;
AC)  # session 6, after AB: the host's share of a token on the file path (pinned logits copy, numpy argmax, numpy
    # views of the pinned inputs) against the committed tree (4df9030), ggrun bench -m FILE -p 0 -n 128, A B A B
  mkdir -p /tmp/head && git archive HEAD | tar -x -C /tmp/head
  for m in 6.7b 33b; do
    python3 -m ggrun synth --like deepseek-coder-$m --type Q4_K_M /tmp/ds-$m.gguf 2>&1 | tail -1
    for r in 1 2; do
      (cd /tmp/head && run file_head_${m}_$r 90 env PYTHONPATH=/tmp/site:/tmp/head python3 -m ggrun bench -m /tmp/ds-$m.gguf -ngl 99 -p 0 -n 128 -r 3)
      grep -E "^\| |rror" "$OUT/file_head_${m}_$r.log" | tail -1
      run file_new_${m}_$r 90 python3 -m ggrun bench -m /tmp/ds-$m.gguf -ngl 99 -p 0 -n 128 -r 3
      grep -E "^\| |rror" "$OUT/file_new_${m}_$r.log" | tail -1
    done
    rm -f /tmp/ds-$m.gguf
  done
  ;;
AD)  # session 6, the final tree: the per-thread pinned logits (only a GPU runs that code), the CUDA engine tests, the
    # bench table's ngl column on a file
  export TRITON_INTERPRET=0
  run pytest_gpu 120 python3 -m pytest -o addopts= -q -x -p no:cacheprovider tests/test_cuda_decode.py
  grep -E "passed|failed|^FAILED|^ERROR" "$OUT/pytest_gpu.log" | tail -3
  unset TRITON_INTERPRET
  python3 -m ggrun synth --like deepseek-coder-6.7b --type Q4_K_M /tmp/ds.gguf 2>&1 | tail -1
  run file_bench 90 python3 -m ggrun bench -m /tmp/ds.gguf -ngl 99 -p 512 -n 128 -r 3
  grep -E "^\| |rror" "$OUT/file_bench.log" | tail -4
  ;;
esac
echo "total $(( $(date +%s) - t0 ))s"
