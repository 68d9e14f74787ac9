"""Download, verify and unpack the real benchmarks (PASCAL-5i, COCO-20i) and weight files.

Entry point: :func:`download` (``python -m msanet_lib.data download pascal --root data/``).

Every transfer goes through :func:`download_url`, which

- writes to ``<name>.part`` and **resumes** it with an HTTP ``Range`` request when the
  command is run again (or automatically, up to ``retries`` times, when a connection
  drops mid-file);
- verifies the finished file against the checksums that are known (MD5 / SHA-256 / size)
  and records its size and SHA-256 in ``<name>.ok.json`` so later runs skip re-hashing;
- renames the ``.part`` file to its final name atomically (``os.replace``), so a file
  with the final name is always complete;
- never deletes a bad file: a checksum mismatch renames it to ``<name>.bad`` and says so.

Archives are unpacked by :func:`extract_archive`, which refuses members that would land
outside the destination (absolute paths, ``..``, links pointing outside): a malicious or
corrupt archive cannot write anywhere else on the disk.

Checksums. The MD5 of ``VOCtrainval_11-May-2012.tar`` is the one torchvision's
``VOCSegmentation`` verifies (``6cd6e144f989b92b3379bac3b3de84fd``). The MD5s of the COCO
``train2014.zip`` and ``val2014.zip`` are the ones several independent dataset tools check
(e.g. Salesforce LAVIS, chainer-mask-rcnn). No reliable checksum was found for
``annotations_trainval2014.zip`` nor for ``SegmentationClassAug`` (which has no official
host); for those only the recorded size/SHA-256 of the first complete download is checked
on later runs.

Why not torchvision's ``download_url`` (already a dependency): on a dropped connection it
retries from byte 0, never with a ``Range`` request, so every drop costs the whole file again
(2 GB for PASCAL, 19 GB for COCO); tests/data/test_download_library_choice.py measures both on
the same local server and fails the day torchvision resumes.

``base_url`` replaces the directory part of every URL (``<base_url>/<file name>``): this
points all downloads at a mirror, or at a local test server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import stat
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from tqdm import tqdm

from msanet_lib.data.coco_masks import write_label_maps
from msanet_lib.data.lists import write_split_list
from msanet_lib.utils import data_root

# Where each benchmark lands under the data root (the layout of the BAM/MSANet lists).
PASCAL_DIR = Path("VOCdevkit") / "VOC2012"
COCO_DIR = Path("MSCOCO2014")
DOWNLOADS_DIR = "downloads"
CHECKPOINTS_DIR = "checkpoints"

SEGAUG_FILENAME = "SegmentationClassAug.zip"
SEGAUG_ENV = "MSANET_SEGAUG"
SEGAUG_MIRRORS = (
    "SegmentationClassAug (the SBD masks converted to VOC PNGs) has no official host. Known "
    "mirrors: the PFENet Google Drive file id 1ikrDlsai5QSf2GiSUR3f8PZUzyTubcuF and the HSNet "
    "Google Drive file id 10zxG2VExoEZUeyQl_uXga2OWHjGeZaf2 (SBD itself: "
    "http://home.bharathh.info/pubs/codes/SBD/download.html)."
)


class DownloadError(RuntimeError):
    """A transfer failed (network, HTTP error); the partial file is kept for resuming."""


class ChecksumError(ValueError):
    """A finished file does not match its expected checksum; it was kept as ``*.bad``."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, what to call it, and what is known about it.

    ``md5``/``sha256`` are hex digests and ``size`` is in bytes; ``None`` means unknown.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None

    def resolved_url(self, base_url: str | None) -> str:
        return f"{base_url.rstrip('/')}/{self.filename}" if base_url else self.url


VOC2012_TRAINVAL = RemoteFile(
    url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    filename="VOCtrainval_11-May-2012.tar",
    md5="6cd6e144f989b92b3379bac3b3de84fd",
)
SBD_TRAIN_NOVAL = RemoteFile(
    url="http://home.bharathh.info/pubs/codes/SBD/train_noval.txt",
    filename="train_noval.txt",
)
"""SBD's train list without VOC2012 val images (PFENet's README); with VOC train it makes
the PASCAL-5i training set (5,953 unique images)."""
COCO2014_FILES = (
    RemoteFile(
        url="http://images.cocodataset.org/zips/train2014.zip",
        filename="train2014.zip",
        md5="0da8c0bd3d6becc4dcb32757491aca88",
    ),
    RemoteFile(
        url="http://images.cocodataset.org/zips/val2014.zip",
        filename="val2014.zip",
        md5="a3d79f5ed8d289b7a7554ce06a5782b3",
    ),
    RemoteFile(
        url="http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        filename="annotations_trainval2014.zip",
    ),
)


def _say(message: str) -> None:
    print(f"[msanet-data] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- checksums


def file_digests(path: Path, chunk_size: int = 1 << 22) -> dict[str, str]:
    """MD5 and SHA-256 hex digests of ``path`` in one read."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".ok.json")


def _free_name(path: Path) -> Path:
    """``path`` itself if unused, else ``path.1``, ``path.2``, ... (never overwrite)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def verify_file(
    path: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    name: str | None = None,
) -> dict[str, str]:
    """Checks ``path`` against what is known; on a mismatch keeps it as ``<name>.bad``.

    Args:
        path: file to check (a finished download or its ``.part``).
        md5, sha256, size: expected values, ``None`` when unknown.
        name: the file's final name, for messages and the ``.bad`` name (default
            ``path.name``).

    Returns:
        The computed digests ``{"md5": ..., "sha256": ...}``.

    Raises:
        ChecksumError: after renaming the file (it is never deleted).
    """
    name = name or path.name
    problems = []
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        problems.append(f"size {actual_size} bytes, expected {size}")
    digests = file_digests(path) if (md5 or sha256 or not problems) else {}
    if md5 and digests.get("md5") != md5.lower():
        problems.append(f"MD5 {digests.get('md5')}, expected {md5}")
    if sha256 and digests.get("sha256") != sha256.lower():
        problems.append(f"SHA-256 {digests.get('sha256')}, expected {sha256}")
    if problems:
        bad = _free_name(path.with_name(name + ".bad"))
        os.replace(path, bad)
        raise ChecksumError(
            f"{name} is not the expected file: {'; '.join(problems)}. It was kept as {bad} "
            "(nothing was deleted). Delete that file and run the same command again to "
            "download it afresh; if the mismatch repeats, the server's copy changed or the "
            "URL points at another file: check the URL or mirror."
        )
    return digests


def _write_stamp(path: Path, digests: dict[str, str]) -> None:
    st = path.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **digests}
    tmp = _stamp_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, _stamp_path(path))


def _check_existing(path: Path, remote: RemoteFile) -> None:
    """Verifies an already downloaded file (cheaply if its stamp is still valid)."""
    stamp = _stamp_path(path)
    st = path.stat()
    if stamp.exists():
        record = json.loads(stamp.read_text())
        if record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
            return
        # The file changed since it was verified: check it against the recorded digest too.
        digests = verify_file(
            path,
            md5=remote.md5 or record.get("md5"),
            sha256=remote.sha256 or record.get("sha256"),
            size=remote.size,
        )
    else:
        digests = verify_file(path, md5=remote.md5, sha256=remote.sha256, size=remote.size)
    _write_stamp(path, digests)


# --------------------------------------------------------------------------- transfers


def _content_range_total(value: str | None) -> int | None:
    """Total size from a ``Content-Range: bytes a-b/total`` (or ``bytes */total``) header."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _transfer(
    url: str, part: Path, label: str, timeout: float, chunk_size: int, progress: bool
) -> None:
    """Appends the missing bytes of ``url`` to ``part`` (one HTTP request)."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "msanet-lib-downloader"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        # 416 on a resume: nothing left to send when the part already holds the whole file.
        if err.code == 416 and start and _content_range_total(
            err.headers.get("Content-Range")
        ) in (start, None):
            return
        raise
    with response:
        if start and response.status == 206:
            range_header = response.headers.get("Content-Range", "")
            if not range_header.startswith(f"bytes {start}-"):
                raise DownloadError(
                    f"{label}: the server answered the resume request for byte {start} with "
                    f"'Content-Range: {range_header}'. Delete {part} to restart from zero."
                )
            total = _content_range_total(range_header)
            mode = "ab"
        else:
            if start:
                _say(f"{label}: the server ignores byte ranges; restarting from byte 0.")
            start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        expected = None if total is None else total - start
        received = 0
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(chunk_size):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, HTTPError):
        return err.code in (408, 429) or err.code >= 500
    return isinstance(err, OSError | http.client.HTTPException)


def download_url(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Downloads ``url`` to ``dest`` with resume, verification and an atomic rename.

    If ``dest`` already exists it is verified and returned. Otherwise bytes go to
    ``dest.part``; a ``.part`` left by an interrupted run is continued from its length
    with an HTTP Range request, not restarted.

    Args:
        url: http(s) address.
        dest: final file path.
        md5, sha256, size: known checksums/size of the file, ``None`` when unknown.
        retries: automatic resumes after a dropped connection before giving up.
        retry_wait: seconds before the first retry (doubled each time).

    Raises:
        DownloadError: the transfer failed; the ``.part`` file is kept and the message
            says how to resume.
        ChecksumError: the finished file does not match (kept as ``<name>.bad``).
    """
    dest = Path(dest)
    remote = RemoteFile(url=url, filename=dest.name, md5=md5, sha256=sha256, size=size)
    if dest.exists():
        _check_existing(dest, remote)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        kept = _free_name(part.with_name(dest.name + ".bad"))
        os.replace(part, kept)
        _say(f"{part} was larger than {dest.name} can be; kept it as {kept}, starting over.")
    attempt = 0
    while True:
        try:
            _transfer(url, part, dest.name, timeout, chunk_size, progress)
            break
        except (OSError, http.client.HTTPException) as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt >= retries or not _is_retryable(err):
                reason = f"HTTP {err.code} {err.reason}" if isinstance(err, HTTPError) else err
                if isinstance(err, URLError) and not isinstance(err, HTTPError):
                    reason = err.reason
                raise DownloadError(
                    f"Downloading {url} failed after {attempt + 1} attempt(s): {reason!s}. "
                    f"{have} bytes are kept in {part}; run the same command again to resume "
                    "from there (check the network connection or the URL first)."
                ) from err
            attempt += 1
            wait = retry_wait * 2 ** (attempt - 1)
            _say(f"{dest.name}: {err!s}; resuming from byte {have} in {wait:.0f} s.")
            time.sleep(wait)
    digests = verify_file(part, md5=md5, sha256=sha256, size=size, name=dest.name)
    os.replace(part, dest)
    _write_stamp(dest, digests)
    _say(f"{dest.name}: done, SHA-256 {digests['sha256']}.")
    return dest


def fetch(
    remote: RemoteFile, directory: Path, base_url: str | None = None, **kwargs: object
) -> Path:
    """Downloads one :class:`RemoteFile` into ``directory`` (see :func:`download_url`)."""
    return download_url(
        remote.resolved_url(base_url),
        Path(directory) / remote.filename,
        md5=remote.md5,
        sha256=remote.sha256,
        size=remote.size,
        **kwargs,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- archives


def _unsafe(archive: Path, name: str, dest: Path) -> ValueError:
    return ValueError(
        f"{archive} contains the member '{name}', which would be written outside "
        f"{dest}. Refusing to unpack it (nothing was extracted): the archive is corrupt "
        "or malicious; download it again from the official source."
    )


def _safe_member_path(archive: Path, name: str, dest: Path) -> Path:
    """The path ``name`` would be extracted to, or ``ValueError`` if it leaves ``dest``."""
    posix = PurePosixPath(name.replace("\\", "/"))
    target = (dest / Path(*posix.parts)).resolve() if posix.parts else dest
    if posix.is_absolute() or ".." in posix.parts or not target.is_relative_to(dest):
        raise _unsafe(archive, name, dest)
    return target


class _LinkWalker:
    """Follows paths inside ``dest`` as extraction would: through the symbolic links created by
    the members seen so far and those already on disk, so that a chain (``l1 -> .``, then
    ``l1/l2 -> ..``, then ``l2/evil.txt``) is caught before anything is written."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.links: dict[tuple[str, ...], str] = {}

    def _link_at(self, parts: tuple[str, ...]) -> str | None:
        if parts in self.links:
            return self.links[parts]
        real = self.dest.joinpath(*parts)
        return os.readlink(real) if real.is_symlink() else None

    def resolve(self, parts: list[str], follow_last: bool = True) -> tuple[str, ...] | None:
        """``parts`` (relative to ``dest``) with every link followed; None if it leaves ``dest``."""
        out: list[str] = []
        queue = [p for p in parts]
        hops = 0
        while queue:
            part = queue.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(part)
            if not queue and not follow_last:
                break
            target = self._link_at(tuple(out))
            if target is not None:
                hops += 1
                target_path = PurePosixPath(target.replace("\\", "/"))
                if hops > 64 or target_path.is_absolute():
                    return None  # a loop, or a link to an absolute path
                out.pop()
                queue = [*target_path.parts, *queue]
        return tuple(out)

    def check(self, archive: Path, member: tarfile.TarInfo) -> None:
        """Raise if ``member`` (or the link it makes) would reach outside ``dest``."""
        parts = list(PurePosixPath(member.name.replace("\\", "/")).parts)
        if member.issym():
            where = self.resolve(parts, follow_last=False)
            if where is None:
                raise _unsafe(archive, member.name, self.dest)
            link = PurePosixPath(member.linkname.replace("\\", "/"))
            if link.is_absolute() or self.resolve([*where[:-1], *link.parts]) is None:
                raise _unsafe(archive, f"{member.name} -> {member.linkname}", self.dest)
            self.links[where] = member.linkname
            return
        if self.resolve(parts) is None:
            raise _unsafe(archive, member.name, self.dest)
        if member.islnk():  # hard links are relative to the archive root
            link = PurePosixPath(member.linkname.replace("\\", "/"))
            if link.is_absolute() or self.resolve(list(link.parts)) is None:
                raise _unsafe(archive, f"{member.name} -> {member.linkname}", self.dest)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Unpacks a tar (optionally compressed) or zip ``archive`` into ``dest``.

    Every member is checked before anything is written. A marker
    ``dest/.<archive name>.extracted`` makes a second call a no-op, so an interrupted
    unpack is simply redone.

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        ValueError: unknown format, or a member would land outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    marker = dest / f".{archive.name}.extracted"
    if marker.exists():
        return dest
    suffixes = "".join(archive.suffixes).lower()
    is_zip = suffixes.endswith(".zip") or (
        not any(s in suffixes for s in (".tar", ".tgz")) and zipfile.is_zipfile(archive)
    )
    _say(f"unpacking {archive.name} into {dest}")
    if is_zip:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _safe_member_path(archive, info.filename, dest)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ValueError(
                        f"{archive} contains a symbolic link '{info.filename}'; refusing to "
                        "unpack it (nothing was extracted)."
                    )
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            walker = _LinkWalker(dest)
            for m in members:
                _safe_member_path(archive, m.name, dest)
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise ValueError(
                        f"{archive} contains the special file '{m.name}'; refusing to unpack it "
                        "(nothing was extracted)."
                    )
                walker.check(archive, m)
            # The "data" filter (Python >= 3.11.4, 3.10.12) is a second line of defence; on
            # Pythons without it the walk above is the only one, and it is complete.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            try:
                tf.extractall(dest, members=members, **extra)
            except tarfile.TarError as err:  # FilterError and its kin: explain, do not dump
                raise ValueError(
                    f"{archive}: Python's tar safety filter refused the member "
                    f"'{getattr(getattr(err, 'tarinfo', None), 'name', '?')}' ({err}); files "
                    f"before it may have been written to {dest}. Download the archive again "
                    "from the official source."
                ) from err
    else:
        raise ValueError(
            f"{archive} is neither a zip nor a tar archive; it may be an HTML error page or a "
            "truncated file. Delete it and download it again."
        )
    marker.write_text(archive.name + "\n")
    return dest


# --------------------------------------------------------------------------- benchmarks


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and urlparse(source).scheme in ("http", "https")


def _segaug_archive(
    downloads: Path, base_url: str | None, source: str | Path | None, **kwargs: object
) -> Path:
    """Finds or fetches the SegmentationClassAug archive (no official host exists)."""
    source = source or os.environ.get(SEGAUG_ENV) or None
    local = downloads / SEGAUG_FILENAME
    if source is not None:
        if _is_url(source):
            dest = downloads / SEGAUG_FILENAME
            return download_url(str(source), dest, **kwargs)  # type: ignore[arg-type]
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"segmentation_aug={source!s} is neither an http(s) URL nor an existing "
                f"archive file. Pass the path of SegmentationClassAug.zip or its URL. "
                f"{SEGAUG_MIRRORS}"
            )
        return path
    if local.is_file():
        return local
    if base_url:
        return fetch(RemoteFile(url="", filename=SEGAUG_FILENAME), downloads, base_url, **kwargs)
    raise FileNotFoundError(
        "PASCAL-5i needs SegmentationClassAug, which cannot be downloaded from an official "
        f"host. Get SegmentationClassAug.zip and either put it at {local}, set "
        f"{SEGAUG_ENV}=<path or URL>, or pass segmentation_aug=<path or URL>. "
        f"{SEGAUG_MIRRORS}"
    )


def _install_segaug(archive: Path, voc: Path, downloads: Path) -> Path:
    """Unpacks the SegmentationClassAug archive into ``voc/SegmentationClassAug``."""
    target = voc / "SegmentationClassAug"
    if target.is_dir() and any(target.glob("*.png")):
        return target
    scratch = downloads / "SegmentationClassAug.unpacked"
    extract_archive(archive, scratch)
    # Mirrors differ: PNGs at the top level, or in a SegmentationClassAug/ folder, with
    # macOS resource forks beside them.
    candidates = [scratch, *sorted(scratch.rglob("SegmentationClassAug"))]
    found = next(
        (
            d
            for d in candidates
            if d.is_dir() and "__MACOSX" not in d.parts and any(d.glob("*.png"))
        ),
        None,
    )
    if found is None:
        raise ValueError(
            f"{archive} holds no folder of PNG label maps. Expected SegmentationClassAug/*.png; "
            f"look inside {scratch} and pass the right archive. {SEGAUG_MIRRORS}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if any(target.iterdir()):
            raise ValueError(
                f"{target} exists and holds files but no PNG masks; move it away and run again "
                "(it is not overwritten)."
            )
        target.rmdir()  # an empty folder: nothing to lose
    shutil.move(str(found), str(target))
    shutil.rmtree(scratch)  # our own scratch copy; the archive itself is kept
    return target


def prepare_pascal(
    root: Path,
    base_url: str | None = None,
    segmentation_aug: str | Path | None = None,
    **kwargs: object,
) -> Path:
    """VOC2012 trainval + SegmentationClassAug into ``root/VOCdevkit/VOC2012``.

    Returns the VOC2012 folder (``JPEGImages/``, ``SegmentationClassAug/``, ...).
    """
    root = Path(root)
    downloads = root / DOWNLOADS_DIR
    # Resolve the SegmentationClassAug source first so a missing one fails before 2 GB.
    seg_archive = _segaug_archive(downloads, base_url, segmentation_aug, **kwargs)
    voc_tar = fetch(VOC2012_TRAINVAL, downloads, base_url, **kwargs)
    extract_archive(voc_tar, root)
    voc = root / PASCAL_DIR
    if not (voc / "JPEGImages").is_dir():
        raise ValueError(
            f"{voc_tar} did not produce {voc / 'JPEGImages'}; is it the VOC2012 trainval tar?"
        )
    seg = _install_segaug(seg_archive, voc, downloads)
    _say(f"PASCAL VOC in {voc} ({sum(1 for _ in seg.glob('*.png'))} SegmentationClassAug masks)")
    build_pascal_lists(voc, downloads, base_url, **kwargs)
    return voc


def build_pascal_lists(
    voc: Path, downloads: Path, base_url: str | None = None, **kwargs: object
) -> tuple[Path, Path]:
    """Writes ``voc/lists/{train,val}.txt`` (see :func:`msanet_lib.data.lists.write_split_list`).

    train = VOC2012 ``ImageSets/Segmentation/train.txt`` + SBD ``train_noval.txt`` without
    duplicates; val = VOC2012 ``ImageSets/Segmentation/val.txt``.
    """
    try:
        sbd = fetch(SBD_TRAIN_NOVAL, downloads, base_url, **kwargs)
    except DownloadError as err:
        raise DownloadError(
            f"{err} The SBD list is small: you can also save train_noval.txt from "
            f"{SBD_TRAIN_NOVAL.url} (or a mirror) as {downloads / SBD_TRAIN_NOVAL.filename} and "
            "run the command again."
        ) from err
    image_sets = voc / "ImageSets" / "Segmentation"
    train = write_split_list(voc, "pascal", "train", [image_sets / "train.txt", sbd])
    val = write_split_list(voc, "pascal", "val", [image_sets / "val.txt"])
    return train, val


def prepare_coco(root: Path, base_url: str | None = None, **kwargs: object) -> Path:
    """COCO 2014 images + instance annotations and the per-image PNG label maps.

    Layout (BAM's): ``root/MSCOCO2014/{train2014,val2014}/*.jpg``,
    ``annotations/instances_{train,val}2014.json`` and
    ``annotations/{train2014,val2014}/*.png`` (class ids 1..80, see :mod:`coco_masks`).
    """
    coco = Path(root) / COCO_DIR
    downloads = Path(root) / DOWNLOADS_DIR
    for remote in COCO2014_FILES:
        extract_archive(fetch(remote, downloads, base_url, **kwargs), coco)
    for split in ("train2014", "val2014"):
        ann = coco / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise FileNotFoundError(
                f"{ann} is missing after unpacking annotations_trainval2014.zip; the archive "
                "may be incomplete. Delete it from the downloads folder and run again."
            )
        write_label_maps(ann, coco / "annotations" / split)
    return coco


PREPARERS: dict[str, Callable[..., Path]] = {"pascal": prepare_pascal, "coco": prepare_coco}


def download(
    dataset: str,
    root: Path,
    base_url: str | None = None,
    *,
    segmentation_aug: str | Path | None = None,
    **kwargs: object,
) -> Path:
    """Downloads, verifies and unpacks a benchmark; returns its folder.

    Args:
        dataset: ``"pascal"`` (VOC2012 + SegmentationClassAug) or ``"coco"`` (COCO 2014).
        root: data root (``data/``); archives are kept in ``root/downloads``.
        base_url: if given, every file is fetched from ``<base_url>/<file name>`` instead
            of its official address (a mirror, or a local server in tests).
        segmentation_aug: PASCAL only: path or URL of ``SegmentationClassAug.zip``
            (also read from ``$MSANET_SEGAUG``, or found in ``root/downloads``).
        **kwargs: passed to :func:`download_url` (``retries``, ``progress``, ...).

    Re-running after an interruption resumes where it stopped; finished steps are skipped.
    """
    key = dataset.lower()
    if key not in PREPARERS:
        raise ValueError(
            f"dataset={dataset!r} is not downloadable; choose one of {sorted(PREPARERS)}"
        )
    if key == "pascal":
        return prepare_pascal(Path(root), base_url, segmentation_aug, **kwargs)
    return prepare_coco(Path(root), base_url, **kwargs)


def download_weights(
    url: str,
    *,
    filename: str | None = None,
    root: Path | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    base_url: str | None = None,
    **kwargs: object,
) -> Path:
    """Fetches a weight file (e.g. ``resnet50_v2.pth``, an authors' checkpoint).

    The file goes to ``<root>/checkpoints/<filename>`` (root defaults to the data root),
    with the same resume/verification as the datasets. Pass the ``md5``/``sha256`` the
    publisher gives; without one, the first complete download is recorded and trusted.
    """
    name = filename or Path(urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot infer a file name from url={url!r}; pass filename=...")
    remote = RemoteFile(url=url, filename=name, md5=md5, sha256=sha256)
    directory = Path(root if root is not None else data_root()) / CHECKPOINTS_DIR
    return fetch(remote, directory, base_url, **kwargs)
