"""Inference backends: one module per library, each imported only when used.

``base`` (the protocol, the shared checks and :class:`~engan.runtime.backends.base.BackendOptions`,
which every backend class takes), ``ort`` (ONNX Runtime), ``trt`` (native TensorRT
through cuda-python), ``torch_backend`` (eager PyTorch for checkpoints). Nothing here
is imported by ``import engan.runtime``; the backend table and the auto rule are in
:mod:`engan.runtime.select`.
"""
