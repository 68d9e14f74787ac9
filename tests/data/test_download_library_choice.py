"""Why ``msanet_lib.data.download`` keeps its own HTTP transfer instead of torchvision's.

torchvision is already a dependency and ``torchvision.datasets.utils.download_url`` verifies an
MD5, but on the same scripted dropped connection as tests/data/test_download.py it starts the
file again from byte 0 (no ``Range`` request) and leaves nothing to resume from. For the 2 GB
PASCAL tarball and the 19 GB of COCO zips that costs a whole transfer per dropped connection,
which is the measured reason the project's :func:`~msanet_lib.data.download.download_url`
(``.part`` file, ``Range`` resume, retries) exists. If a torchvision release learns to resume,
this test fails: switch to it then.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from msanet_lib.data import download as dl

from .test_download import FAST, PAYLOAD, md5, server  # noqa: F401 (the server fixture)

tv_utils = pytest.importorskip("torchvision.datasets.utils")


def test_torchvision_restarts_a_dropped_transfer_where_ours_resumes(
        server, tmp_path: Path) -> None:  # noqa: F811
    base, state = server
    state.files["blob.bin"] = PAYLOAD

    state.truncate_next["blob.bin"] = 100_000  # the connection drops after 100 kB
    tv_utils.download_url(f"{base}/blob.bin", str(tmp_path / "tv"), md5=md5(PAYLOAD))
    torchvision_ranges = [r for _, r in state.requests]

    state.requests.clear()
    state.truncate_next["blob.bin"] = 100_000
    dl.download_url(f"{base}/blob.bin", tmp_path / "ours" / "blob.bin", md5=md5(PAYLOAD), **FAST)
    ours_ranges = [r for _, r in state.requests]

    assert (tmp_path / "tv" / "blob.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "ours" / "blob.bin").read_bytes() == PAYLOAD
    # torchvision retried, but from byte 0: 100 kB + the whole 300 kB went over the wire.
    assert torchvision_ranges == [None, None]
    # ours asked only for what was missing.
    assert ours_ranges == [None, "bytes=100000-"]
