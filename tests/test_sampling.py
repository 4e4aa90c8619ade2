import math

import pytest
import torch

from ggrun.errors import BadArgumentError
from ggrun.sampling import SamplingParams, apply_penalties, make_sampler


def test_greedy_is_argmax_first_on_ties():
    s = make_sampler(SamplingParams(temperature=0))
    logits = torch.tensor([0.1, 3.0, 3.0, -1.0])
    assert s(logits, []) == 1
    g = torch.Generator().manual_seed(0)
    for _ in range(20):                    # (numpy's argmax on the host: torch's answer)
        x = torch.randn(32256, generator=g).round(decimals=1)     # many ties
        assert s(x, []) == int(torch.argmax(x)) and s(x[::2], []) == int(torch.argmax(x[::2]))


def test_repeat_penalty_like_llama_cpp():
    p = SamplingParams(repeat_penalty=2.0, repeat_last_n=2)
    logits = torch.tensor([4.0, -4.0, 1.0, 2.0])
    apply_penalties(logits, [0, 1, 3, 1], p)          # last 2: tokens 3 and 1
    assert logits.tolist() == [4.0, -8.0, 1.0, 1.0]   # positive ÷, negative ×; token 0 outside the window


def test_frequency_presence_penalties():
    p = SamplingParams(frequency_penalty=0.5, presence_penalty=1.0)
    logits = torch.zeros(3)
    apply_penalties(logits, [2, 2, 1], p)
    assert logits.tolist() == [0.0, -1.5, -2.0]


def test_same_seed_same_tokens_and_top_k_1_is_greedy():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    a = make_sampler(SamplingParams(temperature=1.0, seed=42, top_k=0, top_p=1.0, min_p=0.0))
    b = make_sampler(SamplingParams(temperature=1.0, seed=42, top_k=0, top_p=1.0, min_p=0.0))
    assert [a(logits, []) for _ in range(20)] == [b(logits, []) for _ in range(20)]
    k1 = make_sampler(SamplingParams(temperature=1.0, seed=1, top_k=1))
    assert all(k1(logits, []) == int(logits.argmax()) for _ in range(10))


def test_top_p_and_min_p_cut():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    seen = set()
    s = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0, seed=3))
    for _ in range(200):
        seen.add(s(logits, []))
    assert seen == {0, 1}                              # 0.5 + 0.3 reaches 0.8
    seen = set()
    s = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.35, seed=3))
    for _ in range(200):
        seen.add(s(logits, []))
    assert seen == {0, 1}                              # p ≥ 0.35 × 0.5


def test_bad_params():
    with pytest.raises(BadArgumentError, match="top_p"):
        SamplingParams(top_p=1.5)
    with pytest.raises(BadArgumentError, match="repeat_penalty"):
        SamplingParams(repeat_penalty=0)
