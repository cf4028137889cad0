"""Fill the Triton model repository from a deploy bundle.

``python -m opencc_cm_serving.deploy --bundle DIR --repository model_repository
--target {python-ort,onnxruntime,tensorrt} [--output DIR] [--max-batch-size 64]
[--long-input-policy reject] [--profiles FILE] ...``

For each model folder it fills ``config.pbtxt.template`` (the encoder's is
``config.<target>.pbtxt.template``) with ``string.Template`` and writes ``config.pbtxt``;
a missing value or any ``${`` left over is a ConfigError. Bundle artifacts are copied into
``<model>/1/artifacts/`` (the graph into ``encoder/1/``). With ``--output`` the committed
repository is left untouched and a complete filled copy is written there instead.
"""
from __future__ import annotations

import argparse
import json
import shutil
import string
import sys
from pathlib import Path

import numpy as np

from opencc_cm_client.contract import (
    CALIBRATION_MODEL, ENCODER_MODEL, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, TEXT_ENSEMBLE, TOKENIZER_MODEL,
)

from opencc_cm_client import server_info as meta
from opencc_cm_client.contract import DEFAULT_PROFILE
from opencc_cm_client.text_rules import tokenizer_sha256

from .batching import DEFAULT_ATTENTION_SPAN
from .bundle import CLASSIFIER_FILE, ONNX_DATA_FILE, ONNX_FILE, TOKENIZER_FILE, check_bundle, load_profiles
from .errors import ConfigError
from .onnx_runner import MEMORY_MODES

TARGETS = ("python-ort", "onnxruntime", "tensorrt")
MODELS = (TOKENIZER_MODEL, IDS_PREPROCESS_MODEL, ENCODER_MODEL, CALIBRATION_MODEL, TEXT_ENSEMBLE, IDS_ENSEMBLE)
ARTIFACTS = {  # model -> bundle files copied into <model>/1/artifacts/
    TOKENIZER_MODEL: (CLASSIFIER_FILE, TOKENIZER_FILE),
    IDS_PREPROCESS_MODEL: (CLASSIFIER_FILE,),
    ENCODER_MODEL: (CLASSIFIER_FILE,),
    CALIBRATION_MODEL: (CLASSIFIER_FILE,),
}
PROFILES_NAME = "profiles.json"
WARMUP_FILE, WARMUP_TOKENS = "ones_int64_16", 16


def fill(template: str, values: dict[str, object], where: str) -> str:
    """Substitute ``${name}``; every placeholder must have a value and none may remain."""
    try:
        text = string.Template(template).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: no value for placeholder {exc}") from None
    if "${" in text:
        raise ConfigError(f"{where}: unfilled placeholder remains")
    return text


def pow2_buckets(max_tokens: int, smallest: int = 16) -> str:
    widths, w = [], smallest
    while w < max_tokens:
        widths.append(w)
        w *= 2
    return ",".join(str(x) for x in widths + [max_tokens])


def pbtxt_quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def client_metadata(spec, profiles: dict, bundle: Path, policy: str) -> str:
    """The ensembles' ``parameters`` block: what clients read instead of hard-coding it
    (labels, threshold profiles, limits, tokenizer fingerprint; see opencc_cm_client.server_info)."""
    values = {
        meta.PARAM_LABELS: json.dumps(list(spec.labels), ensure_ascii=False),
        meta.PARAM_PROFILES: json.dumps({DEFAULT_PROFILE: list(spec.thresholds),
                                         **{k: list(v) for k, v in profiles.items()}}),
        meta.PARAM_MAX_TOKENS: str(spec.max_tokens),
        meta.PARAM_VOCAB_SIZE: str(spec.vocab_size),
        meta.PARAM_PAD_TOKEN_ID: str(spec.pad_token_id),
        meta.PARAM_TOKENIZER_SHA256: tokenizer_sha256(bundle / TOKENIZER_FILE),
        meta.PARAM_LONG_INPUT_POLICY: policy,
        meta.PARAM_CHECKPOINT: spec.checkpoint,
    }
    entries = ",\n".join(f"  {{ key: {pbtxt_quote(k)} value: {{ string_value: {pbtxt_quote(v)} }} }}"
                         for k, v in values.items())
    return "parameters [\n" + entries + "\n]"


def template_path(model_dir: Path, model: str, target: str) -> Path:
    name = f"config.{target}.pbtxt.template" if model == ENCODER_MODEL else "config.pbtxt.template"
    return model_dir / name


def copy_sources(source: Path, output: Path) -> None:
    """Copy templates and model.py files (not generated files) to a fresh repository."""
    if output.exists():
        shutil.rmtree(output)
    for model in MODELS:
        shutil.copytree(source / model, output / model, ignore=shutil.ignore_patterns(
            "config.pbtxt", "*.onnx", "*.onnx.data", "*.plan", "artifacts", "warmup", "__pycache__"))


def deploy(args: argparse.Namespace) -> Path:
    spec = check_bundle(args.bundle, allow_unverified=args.allow_unverified_bundle)
    bundle, source = Path(args.bundle), Path(args.repository)
    profiles = load_profiles(args.profiles, spec.labels) if args.profiles else {}  # fail before writing
    native = args.target != "python-ort"
    windows = args.long_input_policy == "windows"
    overlap = args.window_overlap if args.window_overlap is not None else spec.max_tokens // 8
    if args.max_batch_size < 1 or not 0 <= overlap < spec.max_tokens:
        raise ConfigError(f"need --max-batch-size >= 1 and 0 <= --window-overlap < max_tokens {spec.max_tokens}")
    if not 0.0 <= args.max_pad_fraction < 1.0 or args.max_group_tokens < 1 or args.attention_span < 0:
        raise ConfigError(f"need 0 <= --max-pad-fraction < 1 (got {args.max_pad_fraction}), "
                          f"--max-group-tokens >= 1 (got {args.max_group_tokens}) and "
                          f"--attention-span >= 0 (got {args.attention_span})")
    repo = Path(args.output) if args.output else source
    if args.output:
        copy_sources(source, repo)
    values = {
        "max_batch_size": args.max_batch_size,
        "num_labels": spec.num_labels,
        "max_tokens": spec.max_tokens,
        "long_input_policy": args.long_input_policy,
        "window_overlap": overlap,
        "max_text_bytes": args.max_text_bytes or 16 * spec.max_tokens * (8 if windows else 1),
        "length_buckets": args.length_buckets if args.length_buckets is not None
        else (pow2_buckets(spec.max_tokens) if native else ""),
        "profiles_file": f"artifacts/{PROFILES_NAME}" if args.profiles else "",
        "queue_timeout_us": args.queue_timeout_us,
        "max_queue_size": args.max_queue_size,
        "encoder_queue_delay_us": args.encoder_queue_delay_us,
        "max_group_tokens": args.max_group_tokens,
        "max_pad_fraction": repr(float(args.max_pad_fraction)),
        "attention_span": args.attention_span,
        "encoder_memory": args.encoder_memory,
        "client_metadata": client_metadata(spec, profiles, bundle, args.long_input_policy),
    }
    for model in MODELS:
        model_dir = repo / model
        template = template_path(model_dir, model, args.target)
        if not template.is_file():
            raise ConfigError(f"missing template {template}")
        text = fill(template.read_text(encoding="utf-8"), values, str(template))
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")
        artifacts = model_dir / "1" / "artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        for name in ARTIFACTS.get(model, ()):
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, artifacts / name)
    if args.profiles:
        shutil.copy2(args.profiles, repo / CALIBRATION_MODEL / "1" / "artifacts" / PROFILES_NAME)
    _place_graph(bundle, repo / ENCODER_MODEL)
    return repo


def _place_graph(bundle: Path, encoder_dir: Path) -> None:
    """Copy model.onnx (+ external data) into encoder/1/ and write the warmup input file."""
    version = encoder_dir / "1"
    for name in (ONNX_FILE, ONNX_DATA_FILE):
        (version / name).unlink(missing_ok=True)
        if (bundle / name).is_file():
            shutil.copy2(bundle / name, version / name)
    warmup = encoder_dir / "warmup"
    warmup.mkdir(exist_ok=True)
    (warmup / WARMUP_FILE).write_bytes(np.ones(WARMUP_TOKENS, dtype="<i8").tobytes())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_serving.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="deploy bundle folder from the export step")
    p.add_argument("--repository", default="model_repository", help="repository holding the templates")
    p.add_argument("--output", help="write a filled copy here instead of filling --repository in place")
    p.add_argument("--target", choices=TARGETS, default="python-ort")
    p.add_argument("--allow-unverified-bundle", action="store_true",
                   help="deploy a graph whose parity was not checked or failed (never for production)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--long-input-policy", choices=("reject", "windows"), default="reject",
                   help="texts above max_tokens: reject (INVALID_ARG) or overlapping windows, max score per label")
    p.add_argument("--window-overlap", type=int, help="tokens shared by neighbouring windows; default max_tokens // 8")
    p.add_argument("--profiles", help="JSON file {\"profiles\": {name: {label: threshold}}}")
    p.add_argument("--max-text-bytes", type=int, default=0,
                   help="texts above are rejected before tokenizing; default 16 x max_tokens (x 8 with windows)")
    p.add_argument("--length-buckets", help="comma list; default: none for python-ort, powers of 2 otherwise")
    p.add_argument("--queue-timeout-us", type=int, default=30_000_000)
    p.add_argument("--max-queue-size", type=int, default=1024)
    p.add_argument("--encoder-queue-delay-us", type=int, default=0,
                   help="extra wait for a fuller encoder batch; 0 = batch what queued during the last run")
    p.add_argument("--max-group-tokens", type=int, default=16384,
                   help="python-ort encoder: most cost per run, rows x width x (1 + width / attention span)")
    p.add_argument("--attention-span", type=int, default=DEFAULT_ATTENTION_SPAN,
                   help="python-ort encoder: the width at which a token's attention costs as much as "
                        "its linear work (BENCHMARKS.md); 0 counts rows x width only")
    p.add_argument("--encoder-memory", choices=MEMORY_MODES, default="release",
                   help="python-ort encoder: release = ONNX Runtime gives back what a long run took; "
                        "arena = keep it (faster reuse, RSS stays at the largest request's)")
    p.add_argument("--max-pad-fraction", type=float, default=0.25,
                   help="python-ort encoder: most padding cells per length group; on a CPU-only "
                        "server ~0.1 ran faster (BENCHMARKS.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        repo = deploy(args)
    except ConfigError as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 2
    print(f"deploy: {args.target} repository ready at {repo}")
    if args.target == "tensorrt":
        print(f"deploy: build {repo / ENCODER_MODEL / '1' / 'model.plan'} on the serving GPU (serving/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
