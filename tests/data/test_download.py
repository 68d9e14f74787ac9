"""Downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msanet_lib.data import download as dl
from msanet_lib.data.coco_masks import COCO_CATEGORY_IDS


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    truncate_next: dict[str, int] = field(default_factory=dict)  # name -> bytes to send once
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``state.files`` with ``Range: bytes=N-`` support and scripted failures."""

    state: ServerState

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        name = self.path.rsplit("/", 1)[-1]
        header = self.headers.get("Range")
        self.state.requests.append((self.path, header))
        body = self.state.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if header and self.state.honour_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = self.state.truncate_next.pop(name, None)
        # A dropped connection: announce the whole length, send part of it, hang up.
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("Handler", (RangeHandler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/files", state
    finally:
        httpd.shutdown()
        httpd.server_close()


FAST = {"retry_wait": 0.0, "progress": False, "timeout": 10.0}
PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_full_download_verifies_and_records(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    dest = dl.download_url(
        f"{base}/blob.bin",
        tmp_path / "blob.bin",
        md5=md5(PAYLOAD),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        chunk_size=4096,
        **FAST,
    )
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()
    stamp = json.loads((tmp_path / "blob.bin.ok.json").read_text())
    assert stamp["size"] == len(PAYLOAD) and stamp["md5"] == md5(PAYLOAD)
    # A second call trusts the stamp and does not touch the network.
    dl.download_url(f"{base}/blob.bin", dest, md5=md5(PAYLOAD), **FAST)
    assert len(state.requests) == 1


def test_truncated_transfer_is_resumed_not_restarted(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    state.truncate_next["blob.bin"] = 100_000
    with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
        dl.download_url(f"{base}/blob.bin", tmp_path / "blob.bin", retries=0, **FAST)
    part = tmp_path / "blob.bin.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / "blob.bin").exists()
    dest = dl.download_url(f"{base}/blob.bin", tmp_path / "blob.bin", md5=md5(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests[-1][1] == "bytes=100000-"


def test_dropped_connection_is_retried_automatically(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    state.truncate_next["blob.bin"] = 7_000
    dest = dl.download_url(
        f"{base}/blob.bin", tmp_path / "blob.bin", md5=md5(PAYLOAD), retries=1, **FAST
    )
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in state.requests] == [None, "bytes=7000-"]


def test_server_without_range_support_restarts_cleanly(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    state.honour_range = False
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:5000])
    dest = dl.download_url(f"{base}/blob.bin", tmp_path / "blob.bin", md5=md5(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_on_416(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    dest = dl.download_url(f"{base}/blob.bin", tmp_path / "blob.bin", md5=md5(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_keeps_the_file(server, tmp_path: Path) -> None:
    base, state = server
    state.files["blob.bin"] = PAYLOAD
    with pytest.raises(dl.ChecksumError, match=r"blob\.bin\.bad") as info:
        dl.download_url(f"{base}/blob.bin", tmp_path / "blob.bin", md5="0" * 32, **FAST)
    assert "nothing was deleted" in str(info.value)
    assert not (tmp_path / "blob.bin").exists()
    assert (tmp_path / "blob.bin.bad").read_bytes() == PAYLOAD


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(dl.DownloadError, match="missing.bin.*404"):
        dl.download_url(f"{base}/missing.bin", tmp_path / "missing.bin", **FAST)


def test_download_weights_goes_to_checkpoints(server, tmp_path: Path) -> None:
    base, state = server
    state.files["resnet50_v2.pth"] = PAYLOAD[:1000]
    path = dl.download_weights(
        "https://example.invalid/models/resnet50_v2.pth",
        root=tmp_path,
        md5=md5(PAYLOAD[:1000]),
        base_url=base,
        **FAST,
    )
    assert path == tmp_path / "checkpoints" / "resnet50_v2.pth"
    assert path.read_bytes() == PAYLOAD[:1000]


# --------------------------------------------------------------------------- archives


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "members", "links"),
    [
        ("tar", {"ok.txt": b"x", "../evil.txt": b"x"}, None),
        ("tar", {"/tmp/evil_abs.txt": b"x"}, None),
        ("tar", {"ok.txt": b"x"}, {"link": "../../etc/passwd"}),
        ("zip", {"ok.txt": b"x", "sub/../../evil.txt": b"x"}, None),
        ("zip", {"..\\evil.txt": b"x"}, None),
    ],
)
def test_path_traversal_archives_are_rejected(tmp_path: Path, kind, members, links) -> None:
    archive = tmp_path / f"bad.{kind}"
    archive.write_bytes(tar_bytes(members, links) if kind == "tar" else zip_bytes(members))
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="outside"):
        dl.extract_archive(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not (dest / "ok.txt").exists()  # checked before anything is written


def tar_in_order(entries: list[tuple[str, str, object]]) -> bytes:
    """A tar of (name, "file" | "sym" | "hard" | "fifo", data or link target), in this order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = payload or ""
            tf.addfile(info)
    return buf.getvalue()


CHAINED = [("ok.txt", "file", b"x"), ("l1", "sym", "."), ("l1/l2", "sym", ".."),
           ("l2/evil.txt", "file", b"x")]


@pytest.mark.parametrize("has_data_filter", [True, False])
@pytest.mark.parametrize("entries", [
    CHAINED,
    [("d", "sym", "sub/.."), ("sub", "sym", ".."), ("d/evil.txt", "file", b"x")],
    [("loop", "sym", "loop2"), ("loop2", "sym", "loop"), ("loop/x", "file", b"x")],
    [("ok.txt", "file", b"x"), ("up", "sym", "a/../.."), ("up/evil.txt", "file", b"x")],
    [("h", "hard", "../evil.txt")],
])
def test_chained_links_are_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch, entries, has_data_filter: bool) -> None:
    if not has_data_filter:  # the Pythons 3.10 / 3.11.0-3 that requires-python allows
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "bad.tar"
    archive.write_bytes(tar_in_order(entries))
    dest = tmp_path / "deep" / "out"
    with pytest.raises(ValueError, match="outside .*nothing was extracted"):
        dl.extract_archive(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_links_that_stay_inside_are_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "good.tar"
    archive.write_bytes(tar_in_order([("a/b.txt", "file", b"hi"), ("latest", "sym", "a"),
                                      ("a/up", "sym", ".."), ("copy", "hard", "a/b.txt")]))
    dest = dl.extract_archive(archive, tmp_path / "out")
    assert (dest / "latest" / "b.txt").read_bytes() == b"hi"
    assert (dest / "a" / "up" / "a" / "b.txt").read_bytes() == b"hi"
    assert (dest / "copy").read_bytes() == b"hi"


def test_special_files_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "fifo.tar"
    archive.write_bytes(tar_in_order([("ok.txt", "file", b"x"), ("pipe", "fifo", None)]))
    with pytest.raises(ValueError, match="special file 'pipe'.*nothing was extracted"):
        dl.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_extract_archive_is_idempotent(tmp_path: Path) -> None:
    archive = tmp_path / "good.tar"
    archive.write_bytes(tar_bytes({"a/b.txt": b"hello"}))
    dest = dl.extract_archive(archive, tmp_path / "out")
    assert (dest / "a" / "b.txt").read_bytes() == b"hello"
    (dest / "a" / "b.txt").write_bytes(b"edited by the user")
    dl.extract_archive(archive, tmp_path / "out")  # marker present: not unpacked again
    assert (dest / "a" / "b.txt").read_bytes() == b"edited by the user"


def test_html_page_instead_of_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "page.bin"
    archive.write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        dl.extract_archive(archive, tmp_path / "out")


# --------------------------------------------------------------------------- benchmarks


def fake_voc(server_state: ServerState) -> None:
    label = np.zeros((6, 8))
    label[2:4, 2:6] = 1
    voc = "VOCdevkit/VOC2012"
    server_state.files["VOCtrainval_11-May-2012.tar"] = tar_bytes(
        {
            f"{voc}/JPEGImages/2007_000032.jpg": b"jpeg",
            f"{voc}/SegmentationClass/2007_000032.png": png_bytes(label),
            f"{voc}/ImageSets/Segmentation/train.txt": b"2007_000039\n2007_000063\n",
            f"{voc}/ImageSets/Segmentation/val.txt": b"2007_000032\n",
        }
    )
    server_state.files["train_noval.txt"] = b"2008_000002\n2007_000063\n"
    server_state.files["SegmentationClassAug.zip"] = zip_bytes(
        {
            "SegmentationClassAug/2007_000032.png": png_bytes(label),
            "__MACOSX/SegmentationClassAug/._2007_000032.png": b"junk",
        }
    )


def test_download_pascal_with_fake_voc_tree(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    fake_voc(state)
    tar = state.files["VOCtrainval_11-May-2012.tar"]
    # The official MD5 belongs to the real 2 GB tar; the fake one gets its own.
    monkeypatch.setattr(dl, "VOC2012_TRAINVAL", dl.RemoteFile(
        url=dl.VOC2012_TRAINVAL.url, filename=dl.VOC2012_TRAINVAL.filename, md5=md5(tar)))
    monkeypatch.delenv(dl.SEGAUG_ENV, raising=False)
    voc = dl.download("pascal", tmp_path, base_url=base, **FAST)
    assert voc == tmp_path / "VOCdevkit" / "VOC2012"
    assert (voc / "JPEGImages" / "2007_000032.jpg").read_bytes() == b"jpeg"
    aug = np.asarray(Image.open(voc / "SegmentationClassAug" / "2007_000032.png"))
    assert aug.shape == (6, 8) and aug.sum() == 8
    assert not (tmp_path / "downloads" / "SegmentationClassAug.unpacked").exists()
    # Lists: VOC train + SBD train_noval without duplicates, and VOC val.
    train = (voc / "lists" / "train.txt").read_text().split()
    assert train[::2] == [f"JPEGImages/{i}.jpg" for i in ("2007_000039", "2007_000063",
                                                           "2008_000002")]
    assert (voc / "lists" / "val.txt").read_text() == (
        "JPEGImages/2007_000032.jpg SegmentationClassAug/2007_000032.png\n")
    # Everything is in place: a rerun downloads nothing.
    count = len(state.requests)
    dl.download("pascal", tmp_path, base_url=base, **FAST)
    assert len(state.requests) == count


def test_pascal_without_segmentation_aug_fails_before_downloading(
    server, tmp_path: Path, monkeypatch
) -> None:
    _, state = server
    monkeypatch.delenv(dl.SEGAUG_ENV, raising=False)
    mirror = "1ikrDlsai5QSf2GiSUR3f8PZUzyTubcuF"
    with pytest.raises(FileNotFoundError, match=f"no official host.*{mirror}"):
        dl.download("pascal", tmp_path)
    assert state.requests == []


def test_pascal_takes_a_local_segmentation_aug_archive(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    fake_voc(state)
    local = tmp_path / "elsewhere" / "aug.zip"
    local.parent.mkdir()
    local.write_bytes(state.files.pop("SegmentationClassAug.zip"))
    monkeypatch.setattr(dl, "VOC2012_TRAINVAL", dl.RemoteFile(
        url="", filename="VOCtrainval_11-May-2012.tar"))
    monkeypatch.setenv(dl.SEGAUG_ENV, str(local))
    voc = dl.download("pascal", tmp_path / "data", base_url=base, **FAST)
    assert (voc / "SegmentationClassAug" / "2007_000032.png").is_file()
    assert local.is_file()  # the user's archive is left alone


def test_download_coco_builds_label_maps(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    monkeypatch.setattr(dl, "COCO2014_FILES", tuple(
        dl.RemoteFile(url=r.url, filename=r.filename) for r in dl.COCO2014_FILES))
    categories = [{"id": c, "name": str(c)} for c in COCO_CATEGORY_IDS]
    for split in ("train2014", "val2014"):
        name = f"COCO_{split}_000000000001.jpg"
        state.files[f"{split}.zip"] = zip_bytes({f"{split}/{name}": b"jpeg"})
    anns = {}
    for split in ("train2014", "val2014"):
        anns[f"annotations/instances_{split}.json"] = json.dumps({
            "images": [{"id": 1, "file_name": f"COCO_{split}_000000000001.jpg",
                        "height": 4, "width": 4}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "area": 4.0,
                             "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]], "iscrowd": 0}],
            "categories": categories,
        }).encode()
    state.files["annotations_trainval2014.zip"] = zip_bytes(anns)
    coco = dl.download("coco", tmp_path, base_url=base, **FAST)
    png = coco / "annotations" / "val2014" / "COCO_val2014_000000000001.png"
    label = np.asarray(Image.open(png))
    assert label[:2, :2].tolist() == [[3, 3], [3, 3]] and label.sum() == 12
    assert (coco / "train2014" / "COCO_train2014_000000000001.jpg").is_file()


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pascal"):
        dl.download("imagenet", tmp_path)


def test_msanet_data_download_command(server, tmp_path: Path, monkeypatch, capsys) -> None:
    from msanet_lib.data.__main__ import main

    base, state = server
    fake_voc(state)
    monkeypatch.setattr(dl, "VOC2012_TRAINVAL", dl.RemoteFile(
        url="", filename="VOCtrainval_11-May-2012.tar"))
    monkeypatch.delenv(dl.SEGAUG_ENV, raising=False)
    assert main(["download", "pascal", "--root", str(tmp_path), "--base-url", base]) == 0
    assert (tmp_path / "VOCdevkit" / "VOC2012" / "lists" / "val.txt").is_file()
    # Without a SegmentationClassAug source the command explains where to get one.
    assert main(["download", "pascal", "--root", str(tmp_path / "other")]) == 2
    assert "SegmentationClassAug" in capsys.readouterr().err
