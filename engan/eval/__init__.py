"""Evaluation: PSNR/SSIM on paired sets, NIQE/BRISQUE on unpaired sets, peers and reports.

Modules: :mod:`~engan.eval.metrics` (PSNR, SSIM, brightness), :mod:`~engan.eval.niqe`,
:mod:`~engan.eval.brisque`, :mod:`~engan.eval.peers` (Zero-DCE, Zero-DCE++),
:mod:`~engan.eval.datasets`, :mod:`~engan.eval.enhancers` (model -> enhance function),
:mod:`~engan.eval.runner` (``evaluate_paired``, ``run_eval``), :mod:`~engan.eval.report`
and :mod:`~engan.eval.grid`. Import the submodules directly; nothing heavy loads here.
"""
