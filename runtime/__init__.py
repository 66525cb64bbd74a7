"""engan.runtime: torch-free inference (ONNX Runtime, TensorRT; eager torch only on request)."""
