from ggrun.config import ModelConfig
from ggrun.gguf_file import GGUFFile


def test_smollm2_config(smollm2_path):
    c = ModelConfig.from_gguf(GGUFFile(smollm2_path))
    assert (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim) == (30, 576, 1536, 9, 3, 64)
    assert c.n_vocab == 49152 and c.n_ctx_train == 8192 and c.tied_output
    assert c.rope.freq_base == 100000.0 and c.rope.dim == 64 and c.rope.scaling_type == "none"
    assert abs(c.rms_eps - 1e-5) < 1e-9
    assert c.n_gqa == 3


def test_linear_rope_scaling_like_deepseek_coder(tmp_path):
    from tiny_model import write_tiny_llama

    p = write_tiny_llama(tmp_path / "ds.gguf", rope_scaling=4.0)
    c = ModelConfig.from_gguf(GGUFFile(p))
    assert c.rope.scaling_type == "linear" and c.rope.scaling_factor == 4.0
    assert c.rope.freq_scale == 0.25
