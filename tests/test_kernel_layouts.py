"""The interleaved matvec kernels compile to the thread layout they were designed for.

Compiled ahead of time for sm_90 (Triton's own ptxas; no GPU needed): the weight tiles [lanes,
128 words] must put a warp's 32 threads along the 128 words (4 each: one row's 16 bytes per
thread, 512 contiguous bytes per warp) and the warps along the lanes, every load of the K loop
must have that layout, and the loop must hold no layout conversion (a round trip through shared
memory with barriers). Triton 3.6 (the H200 device's) and 3.9 break ties between tile axes
differently: an earlier [lanes, 32, 4] tiling was coalesced on one and lane-major on the other,
at half the speed (benchmarks/gpu_results.md, session 4).

The compiles run in a child process (this file run as a script): a process that imported Triton
under TRITON_INTERPRET=1, as the other kernel tests do, has the interpreter's standard library.
"""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

# (kernel, M, KS lanes, warps, PF); warps ≤ lanes, as matvec_q launches them
CASES = [("_mv_q4k_il", 1, 8, 8, 0), ("_mv_q4k_il", 1, 4, 2, 1), ("_mv_q4k_il", 3, 2, 8, 0),
         ("_mv_q4k_il", 2, 2, 4, 0), ("_mv_q6k_il", 1, 8, 8, 0), ("_mv_q6k_il", 2, 4, 4, 0),
         ("_mv_q6k_q4k_il", 1, 8, 8, 0), ("_mv_q6k_q4k_il", 1, 8, 8, 1)]
PTR = {"w_ptr": "*i32", "w6_ptr": "*i32", "w4_ptr": "*i32", "xq_ptr": "*i32", "cnt_ptr": "*i32", "d_ptr": "*fp16",
       "d6_ptr": "*fp16", "sq_ptr": "*i8"}
DIV16 = ("stride_xq", "stride_gx", "stride_xd", "stride_xs")   # K-derived strides: multiples of 16 in practice


def _compile_all(cases) -> dict:
    """{case: TTGIR} (in a process without TRITON_INTERPRET)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from ggrun.kernels import matvec

    out = {}
    for name, M, KS, warps, PF in cases:
        fn = getattr(matvec, name)
        params = inspect.signature(fn.fn).parameters
        consts = dict(M=M, MP=triton.next_power_of_2(M), KS=KS, ACC=False, SPLIT=False, PF=PF, SWQ=False, SWG=False,
                      ASM=True, GDC=0)
        consts = {k: v for k, v in consts.items() if k in params}
        names = [n for n in params if n not in consts]
        sig = {n: PTR.get(n, "*fp32") if n.endswith("_ptr") else "i32" for n in names}
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n.endswith("_ptr") or n in DIV16}
        sig.update({k: "constexpr" for k in consts})
        src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
        c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        out[repr((name, M, KS, warps, PF))] = c.asm["ttgir"]
    return out


@pytest.fixture(scope="module")
def ttgirs():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = env.get("TRITON_DEFAULT_FP_FUSION", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-M{c[1]}-KS{c[2]}-w{c[3]}-PF{c[4]}" for c in CASES])
def test_interleaved_kernel_layout(ttgirs, case):
    ir, warps = ttgirs[repr(case)], case[3]
    layouts = dict(re.findall(r"^(#\w+) = (#ttg\.blocked<\{[^>]*\}>)", ir, re.M))
    # every i32 load of a [lanes, 128] tile (weights, activation words): 4 words a thread, threads along the 128
    loads = re.findall(r"tt\.load %\S+ : tensor<(\d+)x128x!tt\.ptr<i32>, (#\w+)>", ir)
    assert loads, "no [lanes, 128] loads found"
    for lanes, lay in loads:
        blk = layouts[lay]
        assert "sizePerThread = [1, 4]" in blk and "threadsPerWarp = [1, 32]" in blk, (lanes, blk)
        assert f"warpsPerCTA = [{min(warps, int(lanes))}, " in blk, (lanes, warps, blk)
    loops = re.findall(r"scf\.for.*?scf\.yield", ir, re.S)       # the K loop (the pair kernel: one per type)
    assert len(loops) == (2 if "q6k_q4k" in case[0] else 1), len(loops)
    for body in loops:
        assert "convert_layout" not in body and "local_alloc" not in body and "local_store" not in body
        # every load in the K loop (weights, d plane, activations and their scales) in the weights' layout
        in_loop = set(re.findall(r"tt\.load %\S+ : tensor<\d+x128x!tt\.ptr<\w+>, (#\w+)>", body))
        assert len(in_loop) == 1, in_loop
        assert len(re.findall(r"tt\.load ", body)) == len(re.findall(r"tt\.load %\S+ : tensor<\d+x128x", body))


if __name__ == "__main__":
    print(json.dumps(_compile_all(CASES)))
