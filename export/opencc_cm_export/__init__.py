"""Export side of opencc-cm-escalation: checkpoint format, reference oracle, ONNX/TensorRT export."""
