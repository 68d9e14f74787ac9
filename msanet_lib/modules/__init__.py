"""Building blocks of MSANet, one concept per file (see docs/ARCHITECTURE.md).

``masked_pooling`` (prototype), ``prior`` (prior mask), ``multi_similarity`` (per-block cosine
maps + ``hyper_final``), ``attention`` (GAM), ``aspp``, ``decoder`` (meta learner blocks),
``base_learner`` (PSPNet head), ``ensemble`` (Gram estimate + learner ensemble), ``kshot``
(K-shot reweighting) and ``losses``.
"""

from msanet_lib.modules.aspp import ASPP
from msanet_lib.modules.attention import Attention
from msanet_lib.modules.ensemble import ensemble, gram_matrix, merge_conv, scene_difference
from msanet_lib.modules.kshot import kshot_reweighter, kshot_weights
from msanet_lib.modules.losses import msanet_losses
from msanet_lib.modules.masked_pooling import masked_average_pooling
from msanet_lib.modules.multi_similarity import MultiSimilarity, hyper_final_head
from msanet_lib.modules.prior import prior_mask

__all__ = [
    "ASPP",
    "Attention",
    "MultiSimilarity",
    "ensemble",
    "gram_matrix",
    "hyper_final_head",
    "kshot_reweighter",
    "kshot_weights",
    "masked_average_pooling",
    "merge_conv",
    "msanet_losses",
    "prior_mask",
    "scene_difference",
]
