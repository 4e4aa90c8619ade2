"""Test inputs for the k-quant quantizers (tests/test_quantize_triton.py, scripts/gpu_check_quantize.py)."""

from __future__ import annotations

import torch


def edge_case_blocks(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Test input (n >= 24, 256) float32 on the CPU: random super-blocks with mixed block
    and group scales, the first 24 rows edge cases (zero / constant / ±0 / tiny / denormal
    / near-eps / huge / one-sided / tied / sparse groups).  For the tests and the GPU check."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = (r(n, 16, 16) * torch.exp(r(n, 1, 1) * 2) * torch.exp(r(n, 16, 1))).reshape(n, 256)
    x[0] = 0                                               # all-zero block
    x[1] = 0
    x[1, 77] = 0.3                                         # one nonzero value
    x[2].view(8, 32)[::2] = 0                              # zero groups of 32 (and of 16)
    x[3] = 0.5                                             # constant block
    x[4] = torch.repeat_interleave(r(16), 16)              # constant groups of 16
    x[5, 100] = 1e6                                        # one huge value
    x[6, 3] = -1e6
    x[7] = -x[7].abs()                                     # negative only
    x[8] = x[8].abs()                                      # positive only
    x[9] *= 1e-20                                          # below GROUP_MAX_EPS
    x[10] = x[10] / x[10].abs().amax() * 1e-15             # around GROUP_MAX_EPS
    x[11] *= 1e-39                                         # denormals
    x[12] = torch.randint(-4, 5, (256,), generator=g).float()  # rounding ties
    x[13] = torch.randint(-8, 9, (256,), generator=g).float() * 0.5
    x[14] *= (torch.rand(256, generator=g) < 0.1).float()  # sparse
    x[15] *= 1e12                                          # x*x*x overflows to inf
    x[16] = -0.0                                           # all -0.0
    x[17, ::2] = -0.0                                      # ±0 in every group
    x[17, 1::2] = 0.0
    x[18, ::16] = -0.0                                     # -0.0 first, positives after
    x[18] = torch.where(x[18] == 0, x[18], x[18].abs())
    x[19].view(16, 16)[:, :8] *= 1e4                       # two magnitudes per group
    x[20] = torch.linspace(-1, 1, 256)                     # ramp
    x[21].view(8, 32)[1::2] *= 1e-6                        # mixed group scales
    x[22] = torch.where(torch.arange(256) % 7 == 0, 1.0, -1.0)  # two values
    x[23, :128] = 0                                        # half empty
    return x.contiguous()


def extreme_blocks() -> torch.Tensor:
    """(24, 256) float32: overflowing magnitudes (x*x*x = inf), subnormal ranges (nmax/(max-min)
    = inf), ±inf and NaN.  llama.cpp's results on these depend on IEEE specials (inf*0 = NaN,
    nearest_int(NaN) = 0 on x86); the torch path differs from it on some of them."""
    x = edge_case_blocks(24, seed=11)
    x[0] *= 1e30
    x[1] *= 1e20
    x[2] *= 1e13
    x[3, 5] = 3e38
    x[4, 7] = -3e38
    x[5] = 3e38
    x[6] *= 1e-38
    x[7] *= 1e-44
    x[8, 5] = float("nan")
    x[9, 7] = float("inf")
    x[10, 9] = -float("inf")
    x[11, ::3] = float("inf")
    x[12, ::2] = -float("inf")
    x[13, 3:40] = float("nan")
    x[14] = float("inf")
    x[15].view(16, 16)[:, 0] = float("nan")
    x[16] = float("nan")
    x[17].view(16, 16)[::2] *= 1e-40
    return x
