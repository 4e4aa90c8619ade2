#!/usr/bin/env python3
"""One 33B gate+up matvec (Q4_K 38400×7168, batch 1) through the general kernel and the batch-1
kernel (three tiles), for ``ncu -k regex:_mv_q`` (benchmarks/device_session.sh F, G)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from ggrun.kernels import layout, matvec as mv  # noqa: E402
from ggrun.kernels.quantize_x import quantize_x  # noqa: E402
from ggrun.kernels.testing import random_blocks  # noqa: E402

p = layout.pack(random_blocks(38400, 7168, layout.Q4_K, device="cuda"), layout.Q4_K)
qx = quantize_x(torch.randn(1, 7168, device="cuda"))
mv.set_batch1_kernels(False)
mv.matvec_q(p, qx)                                   # the general kernel, its H200 tile
mv.set_batch1_kernels(True)
for cfg in ((4, 4, 1, 0), (4, 4, 1, 2), (8, 4, 2, 0)):   # batch-1 tiles; PF bit 1: weights via L2 only
    mv.matvec_q(p, qx, cfg=cfg, split=1)
torch.cuda.synchronize()
