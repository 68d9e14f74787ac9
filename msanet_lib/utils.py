"""Small helpers shared by every package: environment switches and paths."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def fast_mode() -> bool:
    """True when ``MSANET_FAST`` is set to a true value (CI and quick classroom runs)."""
    return os.environ.get("MSANET_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def data_root() -> Path:
    """Where datasets and downloads live: ``$MSANET_DATA`` or ``<repo>/data``."""
    env = os.environ.get("MSANET_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"
