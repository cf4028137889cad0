"""Fill the Triton model repository from a deploy bundle.

``python -m opencc_cm_serving.deploy --bundle DIR --repository model_repository
--target {python-ort,python-torch,onnxruntime,tensorrt} [--output DIR] [--max-batch-size 64]
[--long-input-policy reject] [--profiles FILE] [--perf-input-dir DIR] ...``

For each model folder it fills ``config.pbtxt.template`` (the encoder's is
``config.<target>.pbtxt.template``) with ``string.Template`` and writes ``config.pbtxt``;
a missing value or any ``${`` left over is a ConfigError. Bundle artifacts are copied into
``<model>/1/artifacts/`` (the ONNX graph into ``encoder/1/``; for ``python-torch`` the merged
torch weights into ``encoder/1/artifacts/``, and its config names ``model_torch.py``). With ``--output`` the committed
repository is left untouched and a filled copy of the models the target serves through (its
ensembles and their steps: the Python-backend encoder targets validate ids and calibrate in the
encoder, so they have no ``ids_preprocess`` and no ``calibration``) is written there instead;
``--models`` writes only some of those. In place every model of the committed repository is
filled: Triton loads every folder of a repository, and the committed one holds every model.
``--perf-input-dir`` also writes perf_analyzer ``--input-data`` files for both ensembles
(``write_perf_inputs``): real texts, and their ids/masks from the bundle's tokenizer.
"""
from __future__ import annotations

import argparse
import json
import shutil
import string
import subprocess
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np

from opencc_cm_contract import (CALIBRATION_MODEL, DEFAULT_PROFILE, ENCODER_MODEL, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL,
                                MODELS, TEXT_ENSEMBLE, TOKENIZER_MODEL)
from opencc_cm_contract import metadata as meta
from opencc_cm_contract.buckets import bucket_list, powers_of_two
from opencc_cm_contract.bundle_format import PROFILES_FILE
from opencc_cm_contract.limits import DEFAULT_LONG_INPUT_POLICY, DEFAULT_MAX_BATCH_SIZE, LONG_INPUT_POLICIES, WINDOWS
from opencc_cm_contract.names import ENSEMBLES, MODEL_PREFIX
from opencc_cm_contract.text_rules import (SPECIAL, SPECIAL_TOKEN_MODES, check_token_count, decode_text, encode_texts, load_tokenizer,
                                           tokenizer_sha256)

from .batching import DEFAULT_ATTENTION_SPAN
from .bundle import (CLASSIFIER_FILE, ONNX_DATA_FILE, ONNX_FILE, TOKENIZER_FILE, TORCH_CONFIG_FILE, TORCH_WEIGHTS_FILE,
                     check_bundle, load_profiles)
from .errors import ConfigError
from .onnx_runner import MEMORY_MODES

# The committed templates (``model.py`` files and ``config*.pbtxt.template``) of this checkout: the
# repository folder sits beside the ``serving`` package's folder (an editable install or PYTHONPATH).
CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[2] / "model_repository"
TARGETS = ("python-ort", "python-torch", "onnxruntime", "tensorrt")
RAGGED_TARGETS = ("python-ort", "python-torch")  # Python-backend encoders that regroup ragged rows
TORCH_FILES = (TORCH_WEIGHTS_FILE, TORCH_CONFIG_FILE)
ARTIFACTS = {  # model -> bundle files copied into <model>/1/artifacts/
    TOKENIZER_MODEL: (CLASSIFIER_FILE, TOKENIZER_FILE),
    IDS_PREPROCESS_MODEL: (CLASSIFIER_FILE,),
    ENCODER_MODEL: (CLASSIFIER_FILE,),
    CALIBRATION_MODEL: (CLASSIFIER_FILE,),
}
WARMUP_FILE, WARMUP_TOKENS = "ones_int64_16", 16
# Real prompts of varied length and topic for perf_analyzer (benign and escalation-worthy).
PERF_TEXTS = (
    "How do I bake sourdough bread at home with a cast iron pot?",
    "What are the symptoms of dehydration in older adults?",
    "Give me a step by step plan to pick a lock on my neighbour's door.",
    "Which household chemicals must never be mixed together, and why?",
    "I feel hopeless and I do not know who to talk to tonight.",
    "List the personal addresses of employees at this company.",
    "Write malware that encrypts files and asks for a ransom.",
    "Translate 'good morning' into French, German and Japanese.",
    "Générer un texte en français avec des accents: été, déjà, où, garçon.",
    "Summarise the causes of the French Revolution in three bullet points, then explain which of "
    "them historians still disagree about and why the debate matters for how we teach it today.",
    "hi",
    "My teenage cousin keeps getting messages from an adult stranger on a gaming platform who asks "
    "for photos and tells him to keep it secret. What should our family do, who should we report "
    "it to, and how do we talk to him about it without making him feel he is in trouble?",
)


def fill(template: str, values: dict[str, object], where: str) -> str:
    """Substitute ``${name}``; every placeholder must have a value and none may remain."""
    try:
        text = string.Template(template).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: no value for placeholder {exc}") from None
    if "${" in text:
        raise ConfigError(f"{where}: unfilled placeholder remains")
    return text


def check_model_config(text: str, model: str, where: str):
    """Parse a filled ``config.pbtxt`` into Triton's ``ModelConfig`` (the schema tritonserver
    reads) and check that it names the model folder it goes into; return the message."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{where}: not a valid Triton ModelConfig once filled: {exc}") from None
    if config.name != model:
        raise ConfigError(f"{where}: names model {config.name!r}, but it is the config of {model!r}")
    return config


def pbtxt_quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def client_metadata(spec, profiles: dict, bundle: Path, policy: str, special_tokens: str = SPECIAL) -> str:
    """The ensembles' ``parameters`` block: what clients read instead of hard-coding it
    (labels, threshold profiles, limits, tokenizer fingerprint; see opencc_cm_contract.metadata)."""
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
        meta.PARAM_SPECIAL_TOKENS: special_tokens,
        meta.PARAM_PRECISION: spec.precision,
    }
    entries = ",\n".join(f"  {{ key: {pbtxt_quote(k)} value: {{ string_value: {pbtxt_quote(v)} }} }}"
                         for k, v in values.items())
    return "parameters [\n" + entries + "\n]"


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
    """The encoder's template is per target; the ensembles of the Python-backend encoder targets
    use ``config.folded.pbtxt.template`` (calibration folded into the encoder: fewer hops)."""
    if model == ENCODER_MODEL:
        return model_dir / f"config.{target}.pbtxt.template"
    if model in ENSEMBLES and target in RAGGED_TARGETS:
        return model_dir / "config.folded.pbtxt.template"
    return model_dir / "config.pbtxt.template"


def copy_sources(source: Path, output: Path, models: tuple[str, ...], prefix: str = "") -> None:
    """Copy the templates and model.py files (not generated files) of ``models`` into
    ``output/<prefix><model>``, replacing those folders only: other classifiers already deployed
    there stay."""
    for model in models:
        target = output / f"{prefix}{model}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source / model, target, ignore=shutil.ignore_patterns(
            "config.pbtxt", "*.onnx", "*.onnx.data", "*.plan", "*.safetensors", "artifacts", "warmup",
            "__pycache__"))


@dataclass(frozen=True)
class DeploySettings:
    """What ``deploy`` fills a repository with; the command line is one way to build it. Fields
    are the CLI's options (``--max-batch-size`` -> ``max_batch_size``); ``None`` takes the
    default derived from the bundle (see each option's help)."""

    bundle: Path
    repository: Path = Path("model_repository")
    output: Path | None = None
    target: str = "python-ort"
    model_prefix: str = ""
    allow_unverified_bundle: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    long_input_policy: str = DEFAULT_LONG_INPUT_POLICY
    window_overlap: int | None = None
    special_tokens_in_text: str = SPECIAL
    profiles: Path | None = None
    max_text_bytes: int = 0
    length_buckets: str | None = None
    queue_timeout_us: int = 30_000_000
    max_queue_size: int = 1024
    encoder_queue_delay_us: int = 0
    max_group_tokens: int | None = None
    attention_span: int = DEFAULT_ATTENTION_SPAN
    encoder_memory: str = "shrink"
    encoder_spinning: str = "off"
    long_row_lane: str = "on"
    max_pad_fraction: float = 0.25
    # python-torch encoder
    instance_kind: str = "auto"
    torch_dtype: str = "auto"
    gated_delta: str = "auto"
    pad_to_buckets: str = "auto"
    cuda_graphs: str = "auto"
    batch_buckets: str | None = None
    graph_max_cells: int = 16384
    # only these of the models the target serves through (with ``output``); None: all of them
    models: tuple[str, ...] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DeploySettings:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in vars(args).items() if k in names}
        for key in ("bundle", "repository", "output", "profiles"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if values.get("models") is not None:
            values["models"] = tuple(m.strip() for m in values["models"].split(",") if m.strip())
        return cls(**values)


# The allowed values of each choice setting, for the command line and the Python API alike.
CHOICES: dict[str, tuple[str, ...]] = {
    "target": TARGETS, "long_input_policy": LONG_INPUT_POLICIES, "special_tokens_in_text": SPECIAL_TOKEN_MODES,
    "encoder_memory": MEMORY_MODES, "encoder_spinning": ("on", "off"), "long_row_lane": ("on", "off"),
    "instance_kind": ("auto", "gpu", "cpu"),
    "torch_dtype": ("auto", "bf16", "fp16", "fp32"), "gated_delta": ("auto", "fla", "torch"),
    "pad_to_buckets": ("auto", "on", "off"), "cuda_graphs": ("auto", "on", "off"),
}
# The command line's defaults are the settings' own.
SETTING_DEFAULTS = {f.name: f.default for f in fields(DeploySettings) if f.default is not MISSING}


def _check_settings(settings: DeploySettings, max_tokens: int) -> None:
    """Every setting that can be wrong whatever the templates say; ConfigError naming it."""
    for name, allowed in CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(settings, name)!r}: one of {', '.join(allowed)}")
    overlap = window_overlap(settings, max_tokens)
    if settings.max_batch_size < 1 or not 0 <= overlap < max_tokens:
        raise ConfigError(f"need --max-batch-size >= 1 and 0 <= --window-overlap < max_tokens {max_tokens}")
    if not 0.0 <= settings.max_pad_fraction < 1.0 or group_tokens(settings, max_tokens) < 1 \
            or settings.attention_span < 0:
        raise ConfigError(f"need 0 <= --max-pad-fraction < 1 (got {settings.max_pad_fraction}), "
                          f"--max-group-tokens >= 1 (got {group_tokens(settings, max_tokens)}) and "
                          f"--attention-span >= 0 (got {settings.attention_span})")
    if not isinstance(settings.model_prefix, str) or not MODEL_PREFIX.fullmatch(settings.model_prefix):
        raise ConfigError(f"--model-prefix {settings.model_prefix!r}: lowercase letters and digits ending with '_' "
                          "(e.g. 'jailbreak_')")
    if settings.model_prefix and not settings.output:
        raise ConfigError("--model-prefix needs --output (the committed templates keep their own names)")
    if settings.models is not None and not settings.output:
        raise ConfigError("--models needs --output (in place, Triton loads every model of the committed repository)")


def window_overlap(settings: DeploySettings, max_tokens: int) -> int:
    return settings.window_overlap if settings.window_overlap is not None else max_tokens // 8


def group_tokens(settings: DeploySettings, max_tokens: int) -> int:
    """Default: one max-length row's worth of padded cells, so no joint run holds more than the
    longest single row (whose memory BENCHMARKS.md measures)."""
    return settings.max_group_tokens if settings.max_group_tokens is not None else max_tokens


def template_values(settings: DeploySettings, spec, profiles: dict) -> dict[str, object]:
    """The ``${name}`` values of every template, from the settings and the bundle's spec."""
    native = settings.target not in RAGGED_TARGETS
    windows = settings.long_input_policy == WINDOWS
    default_lengths = bucket_list(powers_of_two(16, spec.max_tokens))
    return {
        "max_batch_size": settings.max_batch_size,
        "num_labels": spec.num_labels,
        "max_tokens": spec.max_tokens,
        "long_input_policy": settings.long_input_policy,
        "window_overlap": window_overlap(settings, spec.max_tokens),
        "max_text_bytes": settings.max_text_bytes or 16 * spec.max_tokens * (8 if windows else 1),
        "length_buckets": settings.length_buckets if settings.length_buckets is not None
        else (default_lengths if native else ""),
        "profiles_file": f"artifacts/{PROFILES_FILE}" if settings.profiles else "",
        "queue_timeout_us": settings.queue_timeout_us,
        "max_queue_size": settings.max_queue_size,
        "encoder_queue_delay_us": settings.encoder_queue_delay_us,
        "max_group_tokens": group_tokens(settings, spec.max_tokens),
        "max_pad_fraction": repr(float(settings.max_pad_fraction)),
        "attention_span": settings.attention_span,
        "encoder_memory": settings.encoder_memory,
        "encoder_spinning": "1" if settings.encoder_spinning == "on" else "0",
        "long_row_lane": "1" if settings.long_row_lane == "on" else "0",
        "special_tokens_in_text": settings.special_tokens_in_text,
        "client_metadata": client_metadata(spec, profiles, Path(settings.bundle), settings.long_input_policy,
                                           settings.special_tokens_in_text),
        "model_prefix": settings.model_prefix,
        # python-ort: an int8 graph runs on ONNX Runtime's CPU provider only
        "ort_providers": "CPUExecutionProvider" if spec.precision == "int8" else "auto",
        # python-torch only
        "instance_kind": instance_kind(settings.instance_kind) if settings.target == "python-torch" else "KIND_CPU",
        "torch_dtype": settings.torch_dtype,
        "gated_delta": settings.gated_delta,
        "pad_to_buckets": settings.pad_to_buckets,
        "cuda_graphs": settings.cuda_graphs,
        "torch_length_buckets": settings.length_buckets or default_lengths,
        "torch_batch_buckets": settings.batch_buckets or bucket_list(powers_of_two(1, settings.max_batch_size)),
        "graph_max_cells": settings.graph_max_cells,
    }


def render_configs(source: Path, settings: DeploySettings, values: dict) -> tuple[dict[str, str], tuple[str, ...]]:
    """Every model's filled config, each parsed as Triton's ModelConfig (a broken template fails
    here, before anything is written), and the models the target serves through: its ensembles
    and the steps they call, in ``MODELS`` order."""
    configs, called = {}, set()
    for model in MODELS:
        template = template_path(source / model, model, settings.target)
        if not template.is_file():
            raise ConfigError(f"missing template {template}")
        configs[model] = fill(template.read_text(encoding="utf-8"), values, str(template))
        config = check_model_config(configs[model], settings.model_prefix + model, str(template))
        called.update(step.model_name.removeprefix(settings.model_prefix) for step in config.ensemble_scheduling.step)
    return configs, tuple(m for m in MODELS if m in ENSEMBLES or m in called)


def chosen_models(settings: DeploySettings, served: tuple[str, ...]) -> tuple[str, ...]:
    """The models this deploy writes: in place every one (Triton loads every folder of the
    committed repository); else those the target serves through, or ``settings.models`` of them."""
    if not settings.output:
        return MODELS
    if settings.models is None:
        return served
    wrong = [m for m in settings.models if m not in served]
    if wrong or not settings.models:
        raise ConfigError(f"--models {','.join(settings.models)!r}: the {settings.target} target serves through "
                          f"{', '.join(served)}")
    return tuple(m for m in served if m in settings.models)


def deploy(settings: DeploySettings) -> Path:
    """Fill the repository (or a copy at ``settings.output``) from the bundle; returns its path."""
    spec = check_bundle(settings.bundle, allow_unverified=settings.allow_unverified_bundle, target=settings.target)
    bundle, source, prefix = Path(settings.bundle), Path(settings.repository), settings.model_prefix
    profiles = load_profiles(settings.profiles, spec.labels) if settings.profiles else {}  # fail before writing
    _check_settings(settings, spec.max_tokens)
    configs, served = render_configs(source, settings, template_values(settings, spec, profiles))
    models = chosen_models(settings, served)
    repo = Path(settings.output) if settings.output else source
    if settings.output:
        if settings.models is None:  # a whole classifier: its folders of models this target has no use for go
            for model in set(MODELS) - set(models):
                shutil.rmtree(repo / f"{prefix}{model}", ignore_errors=True)
        copy_sources(source, repo, models, prefix)
    for model in models:
        model_dir = repo / f"{prefix}{model}"
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(configs[model], encoding="utf-8")
        artifacts = model_dir / "1" / "artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        extra = TORCH_FILES if model == ENCODER_MODEL and settings.target == "python-torch" else ()
        for name in ARTIFACTS.get(model, ()) + extra:
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, artifacts / name)
    if settings.profiles:
        folded = (ENCODER_MODEL,) if settings.target in RAGGED_TARGETS else ()  # calibration folded into the encoder
        for model in {CALIBRATION_MODEL, *folded} & set(models):
            shutil.copy2(settings.profiles, repo / f"{prefix}{model}" / "1" / "artifacts" / PROFILES_FILE)
    if ENCODER_MODEL in models:
        _place_graph(bundle, repo / f"{prefix}{ENCODER_MODEL}", onnx=settings.target != "python-torch")
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


def write_perf_inputs(bundle: Path, out_dir: Path, texts=None) -> dict[str, Path]:
    """perf_analyzer ``--input-data`` files, one entry per text: ``classify_text.json`` (the text)
    and ``classify_ids.json`` (its unpadded ids and an all-ones mask, tokenized as the client
    does). Entries have their own lengths, so run perf_analyzer with batch 1 (``-b 1``) and
    ``--concurrency-range``. A given text the server would reject is a ConfigError; with
    ``texts=None`` the built-in ``PERF_TEXTS`` are used, minus those above the bundle's max_tokens."""
    spec = check_bundle(bundle, allow_unverified=True)
    tokenizer = load_tokenizer(Path(bundle) / TOKENIZER_FILE)
    builtin = texts is None
    try:
        decoded = [decode_text(t, f"perf text {i}") for i, t in enumerate(PERF_TEXTS if builtin else texts)]
        rows = encode_texts(tokenizer, decoded)
        if builtin:
            kept = [i for i, ids in enumerate(rows) if len(ids) <= spec.max_tokens]
            decoded, rows = [decoded[i] for i in kept], [rows[i] for i in kept]
        for i, ids in enumerate(rows):
            check_token_count(ids, f"perf text {i}", spec.max_tokens)
            if max(ids) >= spec.vocab_size:
                raise ConfigError(f"perf text {i}: token id {max(ids)} >= vocab_size {spec.vocab_size}")
    except ValueError as exc:  # InputError
        raise ConfigError(str(exc)) from None
    if not rows:
        raise ConfigError("perf texts: none given")
    text_data = [{"text": {"content": [t], "shape": [1]}} for t in decoded]
    ids_data = [{"input_ids": {"content": list(ids), "shape": [len(ids)]},
                 "attention_mask": {"content": [1] * len(ids), "shape": [len(ids)]}} for ids in rows]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for model, data in ((TEXT_ENSEMBLE, text_data), (IDS_ENSEMBLE, ids_data)):
        written[model] = out_dir / f"{model}.json"
        lines = ",\n".join(json.dumps(entry, ensure_ascii=False) for entry in data)
        written[model].write_text('{"data": [\n' + lines + "\n]}\n", encoding="utf-8")
    return written


def read_texts(path: str | Path) -> list[str]:
    """One text per line; a line that is a JSON object uses its ``text`` field (JSONL)."""
    texts = []
    try:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                texts.append(json.loads(line)["text"] if line.lstrip().startswith("{") else line)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"perf texts: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"perf texts {path} line {n}: not a JSON object with 'text' ({exc})") from None
    return texts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_serving.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="deploy bundle folder from the export step")
    p.add_argument("--repository", help="repository holding the templates")
    p.add_argument("--output", help="write a filled copy here instead of filling --repository in place")
    p.add_argument("--target", choices=CHOICES["target"])
    p.add_argument("--model-prefix",
                   help="deploy this classifier's models as <prefix><model> (e.g. 'jailbreak_' -> jailbreak_classify_text) "
                        "beside others already in --output; needs --output")
    p.add_argument("--allow-unverified-bundle", action="store_true",
                   help="deploy a graph whose parity was not checked or failed (never for production)")
    p.add_argument("--max-batch-size", type=int)
    p.add_argument("--long-input-policy", choices=CHOICES["long_input_policy"],
                   help="texts above max_tokens: reject (INVALID_ARG) or overlapping windows, max score per label")
    p.add_argument("--window-overlap", type=int, help="tokens shared by neighbouring windows; default max_tokens // 8")
    p.add_argument("--special-tokens-in-text", choices=CHOICES["special_tokens_in_text"],
                   help="special: '<|im_start|>' etc. in user text are special tokens, as in the reference (default); "
                        "plain: encoded as ordinary text (clients tokenizing locally follow the published choice)")
    p.add_argument("--profiles", help="JSON file {\"profiles\": {name: {label: threshold}}}")
    p.add_argument("--max-text-bytes", type=int,
                   help="texts above are rejected before tokenizing; default 16 x max_tokens (x 8 with windows)")
    p.add_argument("--length-buckets", help="comma list; default: none for python-ort, powers of 2 otherwise")
    p.add_argument("--queue-timeout-us", type=int,
                   help="default time a request may wait: in the Python-backend encoder's row scheduler, from "
                        f"admission; in Triton's queue for the native targets' models (default "
                        f"{DeploySettings.queue_timeout_us / 1e6:g} s)")
    p.add_argument("--max-queue-size", type=int,
                   help="requests the Python-backend encoder's row scheduler admits and has not answered; Triton's "
                        f"queue size for the native targets' models (default {DeploySettings.max_queue_size})")
    p.add_argument("--encoder-queue-delay-us", type=int,
                   help="extra wait for a fuller encoder batch; 0 = batch what queued during the last run")
    p.add_argument("--max-group-tokens", type=int,
                   help="python-ort encoder: most cost per run, rows x width x (1 + width / attention span); "
                        "default max_tokens (no joint run holds more cells than one max-length row)")
    p.add_argument("--attention-span", type=int,
                   help="python-ort encoder: the width at which a token's attention costs as much as "
                        "its linear work (BENCHMARKS.md); 0 counts rows x width only")
    p.add_argument("--encoder-memory", choices=CHOICES["encoder_memory"],
                   help="python-ort encoder: shrink = ONNX Runtime's arena, shrunk after each run (gives "
                        "back what a long run took); release = no arena (also gives it back, slower); "
                        "arena = keep it (RSS stays at the largest request's)")
    p.add_argument("--encoder-spinning", choices=CHOICES["encoder_spinning"],
                   help="python-ort encoder: on = ONNX Runtime's idle threads spin between operators: ~4%% lower "
                        "batch-1 latency through Triton where nothing else needs the cores (BENCHMARKS.md); off "
                        "(default) = they sleep, leaving the cores to the other lane, the tokenizer and Triton")
    p.add_argument("--long-row-lane", choices=CHOICES["long_row_lane"],
                   help="python-ort encoder: rows of at least solo_row_tokens run in a second worker beside the "
                        "short ones, so a short prompt never waits for a long row (off: one worker, a short "
                        "prompt waits for the long row running)")
    p.add_argument("--max-pad-fraction", type=float,
                   help="python-ort encoder: most padding cells per length group; on a CPU-only "
                        "server ~0.1 ran faster (BENCHMARKS.md)")
    p.add_argument("--models",
                   help="with --output: write only these (comma list) of the models the target serves through, "
                        "e.g. the onnxruntime target's Python-backend steps ids_preprocess,calibration beside another "
                        "deployment, to call them on a server without the ONNX Runtime backend")
    p.add_argument("--perf-input-dir", help="also write perf_analyzer --input-data files "
                                            "classify_text.json and classify_ids.json here")
    p.add_argument("--perf-texts", help="texts for those files: one per line or JSONL with 'text' "
                                        "(default: a built-in set of real prompts)")
    t = p.add_argument_group("python-torch encoder")
    t.add_argument("--instance-kind", choices=CHOICES["instance_kind"],
                   help="KIND_GPU or KIND_CPU encoder instance; auto: GPU when nvidia-smi sees one here")
    t.add_argument("--torch-dtype", choices=CHOICES["torch_dtype"],
                   help="auto: bf16 on CUDA, fp32 on CPU (head always fp32)")
    t.add_argument("--gated-delta", choices=CHOICES["gated_delta"],
                   help="auto: fla-core's chunk kernel when importable on CUDA, else the project's torch rule")
    t.add_argument("--pad-to-buckets", choices=CHOICES["pad_to_buckets"],
                   help="pad each length group to a (batch, length) bucket; auto: on CUDA")
    t.add_argument("--cuda-graphs", choices=CHOICES["cuda_graphs"],
                   help="capture CUDA graphs over the buckets at initialize; auto: on CUDA")
    t.add_argument("--batch-buckets", help="comma list; default powers of 2 up to --max-batch-size")
    t.add_argument("--graph-max-cells", type=int,
                   help="capture graphs for buckets with batch x length up to this; larger shapes run eager")
    p.set_defaults(**SETTING_DEFAULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        repo = deploy(DeploySettings.from_args(args))
        if args.perf_input_dir:
            texts = read_texts(args.perf_texts) if args.perf_texts else None
            for path in write_perf_inputs(Path(args.bundle), Path(args.perf_input_dir), texts).values():
                print(f"deploy: perf_analyzer input data {path}")
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
