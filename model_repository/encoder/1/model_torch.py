"""Triton model ``encoder`` (target ``python-torch``): ``input_ids``, ``attention_mask`` INT64
[batch, seq] -> ``logits`` FP32 [batch, num_labels], the merged classifier in PyTorch.

Same tensors, ragged batching, grouping and error isolation as the ``python-ort`` encoder
(opencc_cm_serving.encoder_model). The runner is opencc_cm_export.torch_encoder.TorchEncoder:
on a KIND_GPU instance bf16 (or fp16), fla-core's Gated DeltaNet kernel when importable (else
the project's torch rule, logged), each length group padded to a (batch, length) bucket and
replayed from a CUDA graph captured here, before the model is READY; on KIND_CPU eager, fp32
or bf16 (``dtype``), on all the cores the stub may use.
Config parameters: ``artifact_dir`` (classifier.json + classifier.safetensors +
classifier_config.json), ``max_pad_fraction``, ``max_group_tokens``, and the runner's
settings (TorchEncoderSettings): ``dtype``, ``gated_delta``, ``pad_to_buckets``,
``cuda_graphs``, ``length_buckets``, ``batch_buckets``, ``graph_max_cells``.
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from opencc_cm_contract import ENCODER_MODEL  # noqa: E402
from opencc_cm_serving.encoder_model import RaggedEncoderModel  # noqa: E402
from opencc_cm_serving.triton import pb, require, version_path  # noqa: E402


def instance_device(args) -> str:
    """``cuda:<id>`` for a KIND_GPU instance, ``cpu`` otherwise."""
    if str(args.get("model_instance_kind", "CPU")).upper() == "GPU":
        return f"cuda:{int(args.get('model_instance_device_id', 0))}"
    return "cpu"


class TritonPythonModel(RaggedEncoderModel):
    def make_runner(self, args, config, params, spec):
        from opencc_cm_export.torch_encoder import TorchEncoder, TorchEncoderSettings

        def log(line):
            pb().Logger.log_info(f"{ENCODER_MODEL}: {line}")

        settings = TorchEncoderSettings(
            device=instance_device(args),
            dtype=require(params, "dtype", ENCODER_MODEL),
            gated_delta=require(params, "gated_delta", ENCODER_MODEL),
            pad_to_buckets=require(params, "pad_to_buckets", ENCODER_MODEL),
            cuda_graphs=require(params, "cuda_graphs", ENCODER_MODEL),
            length_buckets=require(params, "length_buckets", ENCODER_MODEL),
            batch_buckets=require(params, "batch_buckets", ENCODER_MODEL),
            graph_max_cells=int(require(params, "graph_max_cells", ENCODER_MODEL)),
        )
        return TorchEncoder(version_path(args, require(params, "artifact_dir", ENCODER_MODEL)), settings,
                            pad_id=spec.pad_token_id, log=log)
