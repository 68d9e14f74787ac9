"""The assembled models: :class:`MSANet` (meta learner + frozen backbone and base learner).

See ``msanet.py`` for the forward pass and ``validation.py`` for the input checks.
"""

from msanet_lib.model.msanet import (
    MSANet,
    MSANetConfig,
    MSANetOutput,
    MSANetTrainOutput,
    msanet_for_shots,
)

__all__ = ["MSANet", "MSANetConfig", "MSANetOutput", "MSANetTrainOutput", "msanet_for_shots"]
