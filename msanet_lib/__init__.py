"""MSANet few-shot semantic segmentation: a tested library behind a notebook course.

Packages depend in one direction, down: ``runtime`` at the bottom, then ``backbones`` and
``modules``, ``model``, ``data``, ``viz``, ``evaluation``, ``training`` and ``course``; the
commands sit on top. See ``docs/ARCHITECTURE.md`` (checked by ``tests/test_architecture.py``).
"""

__version__ = "0.1.0"
