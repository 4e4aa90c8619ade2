"""``ggrun quantize | convert | synth``: make GGUF files (llama-quantize's flags where it has them)."""

from __future__ import annotations

import math
import sys


def register(sub) -> None:
    q = sub.add_parser("quantize", help="requantize a GGUF file with llama-quantize's mixes (Q4_K_M …)",
                       description="Quantize IN.gguf to OUT.gguf with llama-quantize's per-tensor mix TYPE.")
    q.add_argument("input", metavar="IN.gguf")
    q.add_argument("output", metavar="OUT.gguf")
    q.add_argument("type", metavar="TYPE", help="Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S "
                                                "Q5_K_M Q6_K Q8_0 F16 BF16 F32 (see `ggrun info --quant-types`)")
    q.add_argument("nthreads", nargs="?", type=int, default=None, help="threads (like llama-quantize's last argument)")
    q.add_argument("--allow-requantize", action="store_true", help="allow requantizing tensors that are already quantized")
    q.add_argument("--leave-output-tensor", action="store_true", help="leave output.weight unquantized")
    q.add_argument("--pure", action="store_true", help="all tensors of the mix's default type (no k-quant mix rules)")
    q.add_argument("--output-tensor-type", default=None, metavar="T", help="type of output.weight")
    q.add_argument("--token-embedding-type", default=None, metavar="T", help="type of token_embd.weight")
    q.add_argument("--dry-run", action="store_true", help="print the plan and the sizes, write nothing")
    q.add_argument("--device", default="cpu", help="where to quantize: cpu (default), cuda, cuda:N")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_quantize)

    c = sub.add_parser("convert", help="convert a Hugging Face llama checkpoint to GGUF",
                       description="Convert a Hugging Face llama-family checkpoint folder to GGUF (like convert_hf_to_gguf.py).")
    c.add_argument("model_dir", metavar="HF_DIR")
    c.add_argument("output", metavar="OUT.gguf", nargs="?", default=None)
    c.add_argument("--outfile", default=None, help="same as OUT.gguf")
    c.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    c.add_argument("--vocab-only", action="store_true", help="write only the tokenizer and the metadata")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_convert)

    s = sub.add_parser("synth", help="write a random-weight model of a known shape (for benchmarks and tests)",
                       description="A random-weight GGUF of a known model's exact shape and llama-quantize mix.")
    s.add_argument("output", metavar="OUT.gguf")
    s.add_argument("--like", required=True, help="deepseek-coder-33b | deepseek-coder-6.7b | deepseek-coder-1.3b | smollm2-135m")
    s.add_argument("--type", default="Q4_K_M", help="the mix (default Q4_K_M)")
    s.add_argument("--vocab", default=None, metavar="VOCAB.gguf", help="take the tokenizer from this GGUF file")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)


def _bar(quiet: bool, label: str):
    """(progress callback, context manager) with a rich bar on stderr."""
    import contextlib

    if quiet or not sys.stderr.isatty():
        return None, contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    prog = Progress(TextColumn("[bold]" + label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[name]}"), console=Console(stderr=True),
                    transient=False)
    task = None

    def cb(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:
            task = prog.add_task(label, total=total, name="")
        prog.update(task, completed=done, name=name)

    return cb, prog


def cmd_quantize(args) -> int:
    import torch

    from ..errors import BadArgumentError
    from ..gguf_file import GGUFFile
    from ..quantize import TYPE_NAMES, parse_ftype, parse_ggml_type, plan_quantize, quantize_file

    if args.nthreads is not None:
        if args.nthreads <= 0:
            raise BadArgumentError(f"nthreads {args.nthreads}: must be > 0")
        torch.set_num_threads(args.nthreads)
    ft = parse_ftype(args.type)
    ott = parse_ggml_type(args.output_tensor_type) if args.output_tensor_type else None
    tet = parse_ggml_type(args.token_embedding_type) if args.token_embedding_type else None
    if args.device != "cpu" and not torch.cuda.is_available():
        raise BadArgumentError(f"--device {args.device}: no GPU is available")
    if args.dry_run:
        src = GGUFFile(args.input)
        plans = plan_quantize(src, ft, pure=args.pure, output_tensor_type=ott, token_embedding_type=tet,
                              leave_output_tensor=args.leave_output_tensor)
        n = len(plans)
        for i, p in enumerate(plans.values(), 1):
            shape = ", ".join(str(d) for d in reversed(p.shape))
            src_t = TYPE_NAMES.get(p.src_type, str(p.src_type))
            print(f"[{i:4d}/{n:4d}] {p.name:36s} - [{shape:>16s}], type = {src_t:>6s} -> {TYPE_NAMES[p.dst_type]:>6s}"
                  f"{'  (fallback)' if p.fallback else ''}")
        size_in = sum(src.tensors[k].n_bytes for k in plans)
        size_out = sum(p.n_bytes for p in plans.values())
        n_el = sum(src.tensors[k].n_elements for k in plans)
        print(f"model size  = {size_in / 2**20:8.2f} MiB ({size_in * 8 / n_el:.2f} BPW)")
        print(f"quant size  = {size_out / 2**20:8.2f} MiB ({size_out * 8 / n_el:.2f} BPW)")
        nfb = sum(p.fallback for p in plans.values())
        if nfb:
            print(f"{nfb} of {n} tensor(s) required fallback quantization")
        return 0
    cb, bar = _bar(args.quiet, f"quantize {ft.name}")
    with bar:
        r = quantize_file(args.input, args.output, ft.name, allow_requantize=args.allow_requantize, pure=args.pure,
                          output_tensor_type=ott, token_embedding_type=tet, leave_output_tensor=args.leave_output_tensor,
                          device=args.device, progress=cb)
    n_el = sum(math.prod(p.shape) for p in r.plans.values())
    print(f"model size  = {r.size_in / 2**20:8.2f} MiB ({r.size_in * 8 / n_el:.2f} BPW)")
    print(f"quant size  = {r.size_out / 2**20:8.2f} MiB ({r.size_out * 8 / n_el:.2f} BPW)")
    if r.n_fallback:
        print(f"{r.n_fallback} of {len(r.plans)} tensor(s) required fallback quantization (rows not a multiple of 256)")
    print(f"wrote {r.path} ({r.file_size:,} bytes) in {r.seconds:.1f} s")
    return 0


def cmd_convert(args) -> int:
    from ..convert import convert
    from ..errors import BadArgumentError

    out = args.output or args.outfile
    if out is None:
        raise BadArgumentError("give the output file: ggrun convert HF_DIR OUT.gguf")
    cb, bar = _bar(args.quiet, f"convert {args.outtype}")
    with bar:
        r = convert(args.model_dir, out, outtype=args.outtype, vocab_only=args.vocab_only, progress=cb)
    print(f"wrote {r.path} ({r.file_size:,} bytes, {r.n_tensors} tensors, pre-tokenizer '{r.pre}') in {r.seconds:.1f} s")
    return 0


def cmd_synth(args) -> int:
    from ..synth import synth

    cb, bar = _bar(args.quiet, f"synth {args.like}")
    with bar:
        r = synth(args.like, args.output, ftype=args.type, vocab=args.vocab, seed=args.seed, progress=cb)
    print(f"wrote {r.path} ({r.file_size:,} bytes) in {r.seconds:.1f} s ({r.file_size / max(r.seconds, 1e-9) / 1e9:.2f} GB/s)")
    return 0
