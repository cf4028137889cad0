"""``python -m opencc_cm_export`` (also ``opencc-cm-export``): checkpoints, export, parity, TensorRT, bench."""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from opencc_cm_contract.bundle_format import ONNX_FILE
from opencc_cm_contract.limits import DEFAULT_MAX_TOKENS

print = functools.partial(print, flush=True)  # progress lines show up as they happen


def _checkpoint(args) -> int:
    trained = args.weights == "trained" or (args.weights is None and args.size == "tiny" and args.variant == "cm")
    if trained and (args.size, args.variant) != ("tiny", "cm"):
        print("checkpoint: only the tiny content-moderation checkpoint is trained here; "
              "use --weights random for the others", file=sys.stderr)
        return 2
    if trained:
        from .demo_training import train_demo_checkpoint

        paths = train_demo_checkpoint(Path(args.out), progress=print)
    else:
        from .synthetic_checkpoint import write_synthetic_checkpoint

        paths = write_synthetic_checkpoint(Path(args.out), args.size, variant=args.variant, progress=print)
    print(f"checkpoint: {paths['classifier']}\nbase model: {paths['base_model']}")
    if trained:
        print(f"labeled splits: {paths['data']}/{{train,validation,test}}.jsonl "
              f"(opencc-cm eval {paths['data']}/test.jsonl prints the model card's table for this stand-in)")
    return 0


def _export(args) -> int:
    from .export_pipeline import ParityError, ParityUnchecked, export_bundle

    try:
        export_bundle(args.checkpoint, args.out, base_model=args.base_model, precision=args.precision,
                      max_tokens=args.max_tokens, query_block=args.query_block or None, progress=print,
                      int8_method=args.int8_method)
    except ParityError:
        print("export FAILED parity: the graph was written for inspection but must not be deployed",
              file=sys.stderr)
        return 1
    except ParityUnchecked as exc:
        print(f"export: parity NOT CHECKED: {exc}", file=sys.stderr)
        return 3
    return 0


def _tensorrt(args) -> int:
    from .tensorrt_engine import (TensorRTUnavailable, build_engine, deployed_max_batch, profile_from_bundle,
                                  require_tensorrt)

    try:
        require_tensorrt()  # before anything else: one clear line where TensorRT or a GPU is missing
        max_batch = args.max_batch or deployed_max_batch(Path(args.repository))
        profile = profile_from_bundle(Path(args.bundle), max_batch, opt_batch=args.opt_batch,
                                      opt_tokens=args.opt_tokens)
        build_engine(Path(args.bundle) / ONNX_FILE, Path(args.out), precision=args.precision,
                     profile=profile, progress=print)
    except TensorRTUnavailable as exc:
        print(f"cannot build a TensorRT engine here: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"tensorrt: {exc}", file=sys.stderr)
        return 2
    return 0


def _bench(args) -> int:
    from .benchmark import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    from opencc_cm_contract.bundle_format import PRECISIONS

    from .blocked_attention import DEFAULT_QUERY_BLOCK
    from .int8_quantization import DEFAULT_METHOD as DEFAULT_INT8_METHOD, METHODS as INT8_METHODS

    p = argparse.ArgumentParser(prog="opencc-cm-export", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("checkpoint", help="write a checkpoint in the published TACTIC layout: tiny = the demo "
                       "classifier trained here on synthetic data (about 2 minutes on CPU), else random weights")
    c.add_argument("--size", choices=["tiny", "real-shape"], default="tiny")
    c.add_argument("--variant", choices=["cm", "jailbreak"], default="cm")
    c.add_argument("--weights", choices=["trained", "random"],
                   help="trained: the demo classifier (tiny cm only, the default there); random: seeded random "
                        "weights (the default for real-shape and jailbreak)")
    c.add_argument("--out", required=True, help="folder; gets base-model/ and classifier/")
    c.set_defaults(func=_checkpoint)

    e = sub.add_parser("export", help="merge, export ONNX, prove parity, write the deploy bundle")
    e.add_argument("--checkpoint", required=True, help="TACTIC checkpoint folder or hub repo id")
    e.add_argument("--base-model", help="override the manifest's base model (local folder or repo id)")
    e.add_argument("--out", required=True, help="bundle folder (model.onnx, tokenizer.json, classifier.json)")
    e.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="int8: weight MatMuls in int8 for ONNX Runtime's CPU provider (VNNI), judged against "
                        "fp32 next to the reference as shipped (bf16); deployable on python-ort only")
    e.add_argument("--int8-method", choices=list(INT8_METHODS), default=DEFAULT_INT8_METHOD,
                   help="int8 rewrite: nbits = MatMulNBits 8-bit, accuracy level 4; dynamic = quantize_dynamic")
    e.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="longest input the graph and server accept")
    e.add_argument("--query-block", type=int, default=DEFAULT_QUERY_BLOCK,
                   help="queries per block of the full-attention layers (memory linear in the length); "
                        "0 = transformers' attention holding [heads, seq, seq] scores ("
                        "graph, for memory benchmarks only)")
    e.set_defaults(func=_export)

    t = sub.add_parser("tensorrt", help="build a TensorRT 10/11 engine from a bundle (needs TensorRT and a GPU); "
                       "seq up to the bundle's max_tokens, batch up to the deployed max_batch_size")
    t.add_argument("--bundle", required=True)
    t.add_argument("--out", required=True, help="engine path, e.g. model.plan")
    t.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp16",
                   help="engine precision; on TensorRT 11 it must be the graph's own (export --precision)")
    t.add_argument("--repository", default="model_repository",
                   help="deployed repository whose encoder max_batch_size bounds the profile")
    t.add_argument("--max-batch", type=int, help="override the deployed max_batch_size")
    t.add_argument("--opt-batch", type=int, default=16)
    t.add_argument("--opt-tokens", type=int, default=64)
    t.set_defaults(func=_tensorrt)

    b = sub.add_parser("bench", help="reference path vs exported ONNX on ONNX Runtime, same cores, one run")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--base-model")
    b.add_argument("--bundle", required=True)
    b.add_argument("--batches", default="1,8")
    b.add_argument("--seqs", default="64,256")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", help="write the results here")
    b.set_defaults(func=_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
