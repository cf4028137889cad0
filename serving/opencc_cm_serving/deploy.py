"""Fill the Triton model repository from a deploy bundle.

``python -m opencc_cm_serving.deploy --bundle DIR --repository model_repository
--target {python-ort,python-torch,onnxruntime,tensorrt} [--output DIR] [--max-batch-size 64]
[--long-input-policy reject] [--profiles FILE] ...``

For each model folder it fills ``config.pbtxt.template`` (the encoder's is
``config.<target>.pbtxt.template``) with ``string.Template`` and writes ``config.pbtxt``;
a missing value or any ``${`` left over is a ConfigError. Bundle artifacts are copied into
``<model>/1/artifacts/`` (the ONNX graph into ``encoder/1/``; for ``python-torch`` the merged
torch weights into ``encoder/1/artifacts/``, and its config names ``model_torch.py``). With ``--output`` the committed
repository is left untouched and a complete filled copy is written there instead.
"""
from __future__ import annotations

import argparse
import json
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np

from opencc_cm_client.contract import (
    CALIBRATION_MODEL, ENCODER_MODEL, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, TEXT_ENSEMBLE, TOKENIZER_MODEL,
)

from opencc_cm_client import server_info as meta
from opencc_cm_client.contract import DEFAULT_PROFILE
from opencc_cm_client.text_rules import tokenizer_sha256

from .bundle import (CLASSIFIER_FILE, ONNX_DATA_FILE, ONNX_FILE, TOKENIZER_FILE, TORCH_CONFIG_FILE, TORCH_WEIGHTS_FILE,
                     check_bundle, load_profiles)
from .errors import ConfigError

TARGETS = ("python-ort", "python-torch", "onnxruntime", "tensorrt")
RAGGED_TARGETS = ("python-ort", "python-torch")  # Python-backend encoders that regroup ragged rows
TORCH_FILES = (TORCH_WEIGHTS_FILE, TORCH_CONFIG_FILE)
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


def pow2_batches(max_batch: int) -> str:
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return ",".join(str(x) for x in sizes + [max_batch])


def gpu_visible() -> bool:
    """An NVIDIA GPU on this host (``nvidia-smi -L`` succeeds)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def instance_kind(setting: str) -> str:
    if setting == "auto":
        return "KIND_GPU" if gpu_visible() else "KIND_CPU"
    return {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}[setting]


def template_path(model_dir: Path, model: str, target: str) -> Path:
    name = f"config.{target}.pbtxt.template" if model == ENCODER_MODEL else "config.pbtxt.template"
    return model_dir / name


def copy_sources(source: Path, output: Path) -> None:
    """Copy templates and model.py files (not generated files) to a fresh repository."""
    if output.exists():
        shutil.rmtree(output)
    for model in MODELS:
        shutil.copytree(source / model, output / model, ignore=shutil.ignore_patterns(
            "config.pbtxt", "*.onnx", "*.onnx.data", "*.plan", "*.safetensors", "artifacts", "warmup",
            "__pycache__"))


def deploy(args: argparse.Namespace) -> Path:
    spec = check_bundle(args.bundle, allow_unverified=args.allow_unverified_bundle, target=args.target)
    bundle, source = Path(args.bundle), Path(args.repository)
    profiles = load_profiles(args.profiles, spec.labels) if args.profiles else {}  # fail before writing
    native = args.target not in RAGGED_TARGETS
    windows = args.long_input_policy == "windows"
    overlap = args.window_overlap if args.window_overlap is not None else spec.max_tokens // 8
    if args.max_batch_size < 1 or not 0 <= overlap < spec.max_tokens:
        raise ConfigError(f"need --max-batch-size >= 1 and 0 <= --window-overlap < max_tokens {spec.max_tokens}")
    if not 0.0 <= args.max_pad_fraction < 1.0 or args.max_group_tokens < 1:
        raise ConfigError(f"need 0 <= --max-pad-fraction < 1 (got {args.max_pad_fraction}) and "
                          f"--max-group-tokens >= 1 (got {args.max_group_tokens})")
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
        "client_metadata": client_metadata(spec, profiles, bundle, args.long_input_policy),
        # python-torch only
        "instance_kind": instance_kind(args.instance_kind) if args.target == "python-torch" else "KIND_CPU",
        "torch_dtype": args.torch_dtype,
        "gated_delta": args.gated_delta,
        "pad_to_buckets": args.pad_to_buckets,
        "cuda_graphs": args.cuda_graphs,
        "torch_length_buckets": args.length_buckets or pow2_buckets(spec.max_tokens),
        "torch_batch_buckets": args.batch_buckets or pow2_batches(args.max_batch_size),
        "graph_max_cells": args.graph_max_cells,
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
        extra = TORCH_FILES if model == ENCODER_MODEL and args.target == "python-torch" else ()
        for name in ARTIFACTS.get(model, ()) + extra:
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, artifacts / name)
    if args.profiles:
        shutil.copy2(args.profiles, repo / CALIBRATION_MODEL / "1" / "artifacts" / PROFILES_NAME)
    _place_graph(bundle, repo / ENCODER_MODEL, onnx=args.target != "python-torch")
    return repo


def _place_graph(bundle: Path, encoder_dir: Path, onnx: bool = True) -> None:
    """Copy model.onnx (+ external data) into encoder/1/ (ONNX targets) and write the warmup input file."""
    version = encoder_dir / "1"
    for name in (ONNX_FILE, ONNX_DATA_FILE):
        (version / name).unlink(missing_ok=True)
        if onnx and (bundle / name).is_file():
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
                   help="python-ort encoder: most padded cells (rows x width) run at once")
    p.add_argument("--max-pad-fraction", type=float, default=0.25,
                   help="python-ort encoder: most padding cells per length group; on a CPU-only "
                        "server ~0.1 ran faster (BENCHMARKS.md)")
    t = p.add_argument_group("python-torch encoder")
    t.add_argument("--instance-kind", choices=("auto", "gpu", "cpu"), default="auto",
                   help="KIND_GPU or KIND_CPU encoder instance; auto: GPU when nvidia-smi sees one here")
    t.add_argument("--torch-dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="auto: bf16 on CUDA, fp32 on CPU (head always fp32)")
    t.add_argument("--gated-delta", choices=("auto", "fla", "torch"), default="auto",
                   help="auto: fla-core's chunk kernel when importable on CUDA, else the project's torch rule")
    t.add_argument("--pad-to-buckets", choices=("auto", "on", "off"), default="auto",
                   help="pad each length group to a (batch, length) bucket; auto: on CUDA")
    t.add_argument("--cuda-graphs", choices=("auto", "on", "off"), default="auto",
                   help="capture CUDA graphs over the buckets at initialize; auto: on CUDA")
    t.add_argument("--batch-buckets", help="comma list; default powers of 2 up to --max-batch-size")
    t.add_argument("--graph-max-cells", type=int, default=16384,
                   help="capture graphs for buckets with batch x length up to this; larger shapes run eager")
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
        print(f"deploy: build {repo / ENCODER_MODEL / '1' / 'model.plan'} on the serving GPU: python -m opencc_cm_export "
              f"tensorrt --bundle {args.bundle} --repository {repo} --out {repo / ENCODER_MODEL / '1' / 'model.plan'} "
              "(serving/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
