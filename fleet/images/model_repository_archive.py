"""Versioned model repositories for the fleet: pack one (CI), fetch one (the pod's init container).

A model repository is what ``python -m opencc_cm_serving.deploy --output DIR`` writes: the
committed model.py files, the filled configs and the checkpoint's artifacts. It is never
baked into an image: CI packs it into ``opencc-cm-repo-<version>-<target>.tar.gz``, uploads it
to object storage and records its sha256; the Deployment's init container fetches it into an
emptyDir that the server container mounts read-only. A new checkpoint is a new archive (new
URL and sha256 in the overlay's ConfigMap), so the rollout is an ordinary Deployment rollout.

    python model_repository_archive.py pack --repository DIR --out FILE.tar.gz   # prints sha256
    python model_repository_archive.py fetch --url URL --sha256 HEX --dest DIR   # DIR/repository

``fetch`` (standard library only): downloads ``http(s)://`` or ``file://`` (use a presigned or
in-cluster object-storage URL), checks the sha256 before unpacking anything, refuses members
with absolute names, ``..`` or anything but files and folders, unpacks with the ``data``
filter into a fresh folder, checks that both ensembles have a filled ``config.pbtxt``, then
renames it to ``DIR/repository``. Settings also come from ``$MODEL_REPOSITORY_URL`` and
``$MODEL_REPOSITORY_SHA256``. Exit 0 on success, 1 on a failed download/check, 2 on bad usage.
A restarted init container finds ``DIR/repository/.sha256`` and does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

REQUIRED = ("classify_text/config.pbtxt", "classify_ids/config.pbtxt")
MARKER = ".sha256"
SHA256 = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" also matches before a final newline


class FetchError(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack(repository: Path, out: Path) -> str:
    """A gzip tarball of the repository's contents (no __pycache__); returns its sha256."""
    repository = Path(repository)
    missing = [name for name in REQUIRED if not (repository / name).is_file()]
    if missing:
        raise FetchError(f"{repository} is not a filled repository (missing {', '.join(missing)}): "
                         "run `python -m opencc_cm_serving.deploy --output DIR` first")

    def keep(info: tarfile.TarInfo):
        return None if "__pycache__" in Path(info.name).parts else info

    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for child in sorted(repository.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return sha256_file(out)


def fetch(url: str, sha256: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """``dest/repository`` holding the archive at ``url`` once its sha256 matched."""
    if not SHA256.fullmatch(sha256 or ""):
        raise ValueError("sha256: 64 lowercase hex digits")
    if not url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"url {url!r}: https://, http:// or file://")
    dest = Path(dest)
    final = dest / "repository"
    if (final / MARKER).is_file() and (final / MARKER).read_text().strip() == sha256:
        return final
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        archive = Path(tmp) / "repository.tar.gz"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(archive, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise FetchError(f"download {url}: {exc}") from None
        if digest.hexdigest() != sha256:
            raise FetchError(f"sha256 mismatch for {url}: got {digest.hexdigest()}, expected {sha256}")
        unpacked = Path(tmp) / "repository"
        unpacked.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar.getmembers():  # what `pack` writes: relative names, files and folders
                    parts = Path(member.name).parts
                    if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                        raise FetchError(f"unpack {url}: refusing member {member.name!r}")
                tar.extractall(unpacked, filter="data")  # and the standard library's own checks
        except (tarfile.TarError, OSError) as exc:
            raise FetchError(f"unpack {url}: {exc}") from None
        missing = [name for name in REQUIRED if not (unpacked / name).is_file()]
        if missing:
            raise FetchError(f"{url} is not a filled model repository (missing {', '.join(missing)})")
        (unpacked / MARKER).write_text(sha256 + "\n")
        if final.exists():
            shutil.rmtree(final)
        unpacked.rename(final)
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_repository_archive.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="tar.gz a filled repository; prints its sha256")
    pk.add_argument("--repository", required=True)
    pk.add_argument("--out", required=True)
    fe = sub.add_parser("fetch", help="download, verify and unpack into DEST/repository")
    fe.add_argument("--url", default=os.environ.get("MODEL_REPOSITORY_URL", ""))
    fe.add_argument("--sha256", default=os.environ.get("MODEL_REPOSITORY_SHA256", ""))
    fe.add_argument("--dest", required=True)
    fe.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    try:
        if args.command == "pack":
            print(pack(Path(args.repository), Path(args.out)))
        else:
            path = fetch(args.url, args.sha256.strip().lower(), Path(args.dest), args.timeout)
            print(f"model repository {args.sha256[:12]} ready at {path}")
    except ValueError as exc:
        print(f"model_repository_archive: {exc}", file=sys.stderr)
        return 2
    except FetchError as exc:
        print(f"model_repository_archive: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
