"""``ggrun perplexity``: llama-perplexity's flags and output (PPL, KL divergence)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity and KL divergence of a model on a text (like llama-perplexity)",
                       description="Perplexity over chunks of -c tokens (the second half of each is scored), "
                                   "or KL divergence against saved base log-probabilities.")
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: the embedded SmolLM2)")
    p.add_argument("-f", "--file", default=None, help="the text")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=-1, help="at most this many chunks (-1: all)")
    p.add_argument("-b", "--batch-size", type=int, default=2048)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-ngl", "--n-gpu-layers", dest="n_gpu_layers", type=int, default=0)
    from ..cli import add_cache_type_args

    add_cache_type_args(p)                    # -ctk, -ctv
    p.add_argument("--kl-divergence-base", default=None, metavar="FILE",
                   help="save the log-probabilities here (with a perplexity run), or read them (with --kl-divergence)")
    p.add_argument("--kl-divergence", action="store_true", help="compare with the saved --kl-divergence-base")
    p.set_defaults(func=cmd_perplexity)


def cmd_perplexity(args) -> int:
    from ..cli import cache_args
    from ..errors import BadArgumentError, GGRunError
    from ..loader import load
    from ..perplexity import kl_divergence, perplexity, read_kld_base, tokenize_text

    if args.ctx_size <= 1:
        raise BadArgumentError(f"-c {args.ctx_size}: must be > 1")
    if args.kl_divergence:
        if not args.kl_divergence_base:
            raise BadArgumentError("--kl-divergence needs --kl-divergence-base FILE (the saved base log-probabilities)")
        n_ctx = read_kld_base(args.kl_divergence_base)[0]
        eng = load(args.model, n_ctx=max(n_ctx, args.ctx_size), n_threads=args.threads, n_gpu_layers=args.n_gpu_layers,
                   n_batch=min(args.batch_size, n_ctx), **cache_args(args))
        kl_divergence(eng, args.kl_divergence_base, n_chunks=args.chunks)
        return 0
    if not args.file:
        raise BadArgumentError("give the text with -f FILE")
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise GGRunError(f"-f {args.file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise GGRunError(f"-f {args.file}: not UTF-8 text") from None
    eng = load(args.model, n_ctx=args.ctx_size, n_threads=args.threads, n_gpu_layers=args.n_gpu_layers,
               n_batch=min(args.batch_size, args.ctx_size), **cache_args(args))
    tokens = tokenize_text(eng.tokenizer, text)
    print(f"perplexity: tokenized {args.file}: {len(tokens)} tokens", file=sys.stderr)
    perplexity(eng, tokens, args.ctx_size, n_chunks=args.chunks, kld_base_out=args.kl_divergence_base)
    return 0
