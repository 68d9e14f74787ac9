"""Pictures: :mod:`~msanet_lib.viz.episodes` (query, supports, masks, predictions) and
:mod:`~msanet_lib.viz.curves` (training loss, learning rate, validation mIoU)."""
