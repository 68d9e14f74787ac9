"""MSANet few-shot semantic segmentation: a tested library behind a notebook course.

Packages depend in one direction: ``backbones`` -> ``modules`` -> ``model``; ``data``;
``evaluation`` and ``training`` build on ``model`` and ``data``; ``viz`` draws. See
``docs/ARCHITECTURE.md``.
"""

__version__ = "0.1.0"
