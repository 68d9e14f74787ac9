"""Evaluation: the few-shot metrics and the authors' test protocol.

- :mod:`~msanet_lib.evaluation.metrics`: intersection/union per episode and class,
  class-wise mIoU, FB-IoU, pIoU (accumulate, then divide).
- :mod:`~msanet_lib.evaluation.protocol`: :func:`evaluate` (1000 episodes x 5 seeds,
  scored at the original label resolution) returning an :class:`EvalResult`.
- ``python -m msanet_lib.evaluation`` / ``msanet-eval``: the command line.
"""

from msanet_lib.evaluation.metrics import FewShotIoU, MultiClassIoU, intersection_and_union
from msanet_lib.evaluation.protocol import SEEDS, EvalResult, SeedResult, evaluate

__all__ = [
    "SEEDS",
    "EvalResult",
    "FewShotIoU",
    "MultiClassIoU",
    "SeedResult",
    "evaluate",
    "intersection_and_union",
]
