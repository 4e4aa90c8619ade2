#!/usr/bin/env python3
"""One 33B gate+up matvec (Q4_K 38400×7168, batch 1) through the row-major general kernel (its
H200 tile) and the row-interleaved kernel (three tiles), for ``ncu -k regex:_mv_q``
(benchmarks/device_session.sh)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from ggrun.kernels import layout, matvec as mv  # noqa: E402
from ggrun.kernels.quantize_x import quantize_x  # noqa: E402
from ggrun.kernels.testing import random_blocks  # noqa: E402

raw = random_blocks(38400, 7168, layout.Q4_K, device="cuda")
qx = quantize_x(torch.randn(1, 7168, device="cuda"))
layout.set_interleave(layout.Q4_K, 0)
mv.matvec_q(layout.pack(raw, layout.Q4_K), qx)                   # row-major, the general kernel
layout.set_interleave(layout.Q4_K, 32)
p = layout.pack(raw, layout.Q4_K)
for cfg in ((32, 8, 8, 0), (32, 4, 4, 0), (32, 2, 1, 0)):
    mv.matvec_q(p, qx, cfg=cfg, split=1)
torch.cuda.synchronize()
