"""Build a TensorRT engine (``model.plan``) from the exported ONNX, on TensorRT 10.x or 11.x.

Runs where the ``tensorrt`` Python package and an NVIDIA GPU exist (NGC images carry 10.x, pip
``tensorrt`` is 11.x); anywhere else it fails up front with :class:`TensorRTUnavailable`, one
line saying what is missing.

- Precision. TensorRT 11 removed ``BuilderFlag.FP16``/``BF16``: a network is strongly typed
  and takes its precision from the graph, so an fp16/bf16 engine needs an fp16/bf16 export
  (``export --precision fp16``). On 10.x a reduced-precision graph is built strongly typed too;
  an fp32 graph may still be lowered with the FP16/BF16 builder flag there.
- Local functions are inlined (``onnx.inliner.inline_local_functions``) before parsing: the
  dynamo exporter may write Scan bodies as model-local functions.
- The optimization profile comes from the bundle (``max_tokens`` in classifier.json) and the
  deploy's max batch (``max_batch_size`` of the deployed encoder config), not separate defaults.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from opencc_cm_contract import ATTENTION_MASK, ENCODER_MODEL, INPUT_IDS
from opencc_cm_contract.bundle_format import ClassifierManifest

OP_TABLE = Path(__file__).resolve().parent / "data" / "tensorrt_onnx_operators.json"


class TensorRTUnavailable(RuntimeError):
    """No TensorRT or no GPU here: the engine must be built on the serving hardware."""


@dataclass(frozen=True)
class Profile:
    max_batch: int
    max_tokens: int
    opt_batch: int = 16
    opt_tokens: int = 64

    def shapes(self) -> dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
        opt = (min(self.opt_batch, self.max_batch), min(self.opt_tokens, self.max_tokens))
        dims = ((1, 1), opt, (self.max_batch, self.max_tokens))
        return {INPUT_IDS: dims, ATTENTION_MASK: dims}


def deployed_max_batch(repository: Path) -> int:
    """``max_batch_size`` of the deployed encoder (``<repository>/encoder/config.pbtxt``)."""
    config = Path(repository) / ENCODER_MODEL / "config.pbtxt"
    match = re.search(r"^max_batch_size:\s*(\d+)", config.read_text(encoding="utf-8"), re.M) if config.is_file() else None
    if not match:
        raise ValueError(f"{config}: no max_batch_size (deploy the repository first)")
    return int(match.group(1))


def profile_from_bundle(bundle: Path, max_batch: int, opt_batch: int = 16, opt_tokens: int = 64) -> Profile:
    manifest = ClassifierManifest.read(bundle)
    return Profile(max_batch=int(max_batch), max_tokens=manifest.max_tokens, opt_batch=opt_batch,
                   opt_tokens=opt_tokens)


def require_tensorrt():
    """Import ``tensorrt`` and check for a GPU, or raise :class:`TensorRTUnavailable`."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(
            "the 'tensorrt' Python package is not installed (build inside NVIDIA's NGC TensorRT/Triton "
            "image on the serving GPU)") from None
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        raise TensorRTUnavailable("no NVIDIA GPU visible (nvidia-smi -L failed); engines are built on the GPU "
                                  "that serves them")
    return trt


def graph_precision(model) -> str:
    """fp32 / fp16 / bf16: the floating type holding most of the graph's initializer elements."""
    from onnx import TensorProto

    names = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
    counts: dict[str, int] = {}
    for init in model.graph.initializer:
        if init.data_type in names:
            n = 1
            for d in init.dims:
                n *= d
            counts[names[init.data_type]] = counts.get(names[init.data_type], 0) + n
    return max(counts, key=counts.get) if counts else "fp32"


def network_plan(major: int, graph: str, precision: str) -> tuple[bool, str | None]:
    """``(strongly_typed, builder_flag)`` for a TensorRT major version, the graph's own precision
    and the engine precision asked for; ValueError where that version cannot do it."""
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    if graph != "fp32":  # reduced-precision export: the graph's types are the precision
        if precision != graph:
            raise ValueError(f"the graph is {graph}; an engine of another precision ({precision}) needs an "
                             f"export with --precision {precision}")
        return True, None
    if precision == "fp32":
        return major >= 11, None
    if major >= 11:
        raise ValueError(f"TensorRT {major} has no FP16/BF16 builder flag (strongly typed networks only): "
                         f"export the bundle with --precision {precision} and build from that graph")
    return False, precision.upper()


def inline_functions(onnx_path: Path, work_dir: Path):
    """Load the graph (with its external data), inline its local functions; write the result to
    ``work_dir/model.onnx`` (external data beside it when large); return (path, model)."""
    import onnx
    import onnx.inliner

    model = onnx.load(str(onnx_path), load_external_data=True)
    inlined = onnx.inliner.inline_local_functions(model)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "model.onnx"
    large = sum(len(t.raw_data) for t in inlined.graph.initializer) > (1 << 30)  # protobuf caps a file at 2 GB
    onnx.save(inlined, str(out), save_as_external_data=large, location="model.onnx.data" if large else None)
    return out, inlined


def op_types(model) -> set[tuple[str, str]]:
    """``(domain, op_type)`` of every node, in subgraphs (Scan/Loop/If bodies) and functions too."""
    found: set[tuple[str, str]] = set()

    def walk(graph):
        for node in graph.node:
            found.add((node.domain or "", node.op_type))
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            found.add((node.domain or "", node.op_type))
    return found


def unsupported_ops(model, table: dict | None = None) -> list[str]:
    """Op types of ``model`` that the stored TensorRT operator table does not mark supported."""
    table = table or json.loads(OP_TABLE.read_text(encoding="utf-8"))
    local = {fn.name for fn in model.functions}
    bad = []
    for domain, op in sorted(op_types(model)):
        if op in local:
            continue  # a call to a local function: its body's ops are checked instead
        entry = table["operators"].get(op) if domain in ("", "ai.onnx") else None
        if not entry or not entry["supported"]:
            bad.append(f"{domain + '::' if domain else ''}{op}")
    return bad


def build_engine(onnx_path: Path, plan_path: Path, *, precision: str, profile: Profile,
                 workspace_gib: int = 8, progress=print) -> Path:
    trt = require_tensorrt()
    major = int(trt.__version__.split(".")[0])
    plan_path = Path(plan_path)
    prepared, model = inline_functions(Path(onnx_path), plan_path.parent / (plan_path.name + ".inlined"))
    strongly_typed, flag = network_plan(major, graph_precision(model), precision)
    progress(f"[tensorrt] TensorRT {trt.__version__}: {'strongly typed' if strongly_typed else 'weakly typed'} "
             f"network{', builder flag ' + flag if flag else ''}; local functions inlined into {prepared}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(prepared)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {prepared}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if flag:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes().items():
        opt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(opt_profile)
    progress(f"[tensorrt] building {precision} engine (batch 1..{profile.max_batch}, seq 1..{profile.max_tokens}); "
             "this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    progress(f"[tensorrt] wrote {plan_path}")
    return plan_path
