"""Build a TensorRT engine (``model.plan``) from the exported ONNX, for the H100 fleet.

Runs where the ``tensorrt`` Python package and an NVIDIA GPU exist (NGC images); anywhere else
it fails up front with :class:`TensorRTUnavailable` saying what is missing. The optimisation
profile covers batch 1..max_batch and seq 1..max_tokens, tuned at ``opt``.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from opencc_cm_contract import ATTENTION_MASK, DEFAULT_MAX_TOKENS, INPUT_IDS


class TensorRTUnavailable(RuntimeError):
    """No TensorRT or no GPU here: the engine must be built on the serving hardware."""


@dataclass(frozen=True)
class Profile:
    max_batch: int = 64
    opt_batch: int = 16
    max_tokens: int = DEFAULT_MAX_TOKENS
    opt_tokens: int = 64

    def shapes(self) -> dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
        dims = ((1, 1), (self.opt_batch, self.opt_tokens), (self.max_batch, self.max_tokens))
        return {INPUT_IDS: dims, ATTENTION_MASK: dims}


def require_tensorrt():
    """Import ``tensorrt`` and check for a GPU, or raise :class:`TensorRTUnavailable`."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "the 'tensorrt' Python package is not installed here; build the engine inside NVIDIA's "
            "NGC TensorRT/Triton image on the target GPU (engines are not portable across GPUs)") from exc
    if shutil.which("nvidia-smi") is None or subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        raise TensorRTUnavailable("no NVIDIA GPU visible (nvidia-smi -L failed); TensorRT engines "
                                  "are built on the GPU that serves them")
    return trt


def build_engine(onnx_path: Path, plan_path: Path, *, precision: str = "fp16",
                 profile: Profile = Profile(), workspace_gib: int = 8, progress=print) -> Path:
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    progress(f"[tensorrt] parsing {onnx_path}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision != "fp32":
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    opt_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes().items():
        opt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(opt_profile)
    progress(f"[tensorrt] building {precision} engine (batch<= {profile.max_batch}, "
             f"seq<= {profile.max_tokens}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(bytes(serialized))
    progress(f"[tensorrt] wrote {plan_path}")
    return plan_path
