"""Triton model ``encoder`` (target ``python-ort``): ``input_ids``, ``attention_mask`` INT64
[batch, seq] -> ``logits`` FP32 [batch, num_labels], on ONNX Runtime.

Validation, the row scheduler (length groups, shortest first, cancelled/expired requests not
computed), responses and metrics: opencc_cm_serving.encoder_model, shared with the
``python-torch`` target (model_torch.py).
Config parameters: those of encoder_model, plus ``onnx_file``, ``providers``,
``intra_op_threads``, ``intra_op_spinning`` ("1": idle ONNX Runtime threads spin, "0": they
sleep), ``memory`` (``shrink``: ONNX Runtime gives back what a long run took;
opencc_cm_serving.onnx_runner).
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from opencc_cm_contract import ENCODER_MODEL  # noqa: E402
from opencc_cm_serving.encoder_model import RaggedEncoderModel  # noqa: E402
from opencc_cm_serving.onnx_runner import OnnxEncoder  # noqa: E402
from opencc_cm_serving.triton import flag_parameter, pb, require, version_path  # noqa: E402


class TritonPythonModel(RaggedEncoderModel):
    def make_runner(self, args, config, params, spec):
        encoder = OnnxEncoder(
            version_path(args, require(params, "onnx_file", ENCODER_MODEL)),
            spec.num_labels,
            providers=require(params, "providers", ENCODER_MODEL),
            intra_op_threads=int(require(params, "intra_op_threads", ENCODER_MODEL)),
            memory=require(params, "memory", ENCODER_MODEL),
            spinning=flag_parameter(params, "intra_op_spinning", ENCODER_MODEL, default=None),
        )
        pb().Logger.log_info(f"{ENCODER_MODEL}: onnxruntime providers {encoder.providers}")
        return encoder

