"""Triton kernels on GGUF blocks for the CUDA backend, one file per job.

- ``layout``: the lossless word-aligned re-layout of each type's blocks (``pack``/``unpack``).
- ``quantize_x``: activations → 8-bit blocks (q8_1), fused with RMSNorm or SwiGLU.
- ``matvec``: fused dequantize-matvec with dp4a integer dots (decode, M ≤ 8); the kernels of
  Q4_1, Q5_0, Q5_1, Q2_K and Q3_K are in ``matvec_ext``.
- ``dequant``: blocks → f16/f32 rows (prefill through cuBLAS; embedding lookups).
- ``attention``: decode attention with RoPE and the KV-cache write fused.
- ``testing``: random valid blocks, references, synthetic llama models.

Importing needs ``triton``; under ``TRITON_INTERPRET=1`` everything runs on the CPU.
"""
