"""Inference backends: one module per library, each imported only when used.

``base`` (the protocol and shared checks), ``ort`` (ONNX Runtime), ``trt`` (native
TensorRT through cuda-python), ``torch_backend`` (eager PyTorch for checkpoints).
Nothing here is imported by ``import engan.runtime``; see :mod:`engan.runtime.select`.
"""
