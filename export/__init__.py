"""engan.export: generator -> ONNX (FP32/FP16), TensorRT engine, Triton repository."""
