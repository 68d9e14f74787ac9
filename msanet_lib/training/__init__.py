"""Training, from a laptop CPU to several GPUs: stage 1 (PSPNet base learner), stage 2 (MSANet).

- :mod:`~msanet_lib.training.config`: YAML configs in ``msanet_lib/configs`` (validated on load).
- :mod:`~msanet_lib.training.stage1` / :mod:`~msanet_lib.training.stage2`: what each stage trains.
- :mod:`~msanet_lib.training.engine`: the shared loop (poly lr, AMP, channels_last, DDP, resume).
- :mod:`~msanet_lib.training.checkpoint`: atomic checkpoints, exact resume, shipping exports.
- :mod:`~msanet_lib.training.pipeline`: :func:`run_training`, the ``msanet-train`` command's core.
"""
