"""Data nodes behind fsspec URLs (``memory://``, ``s3://`` with s3fs, ...): their data
version, and staging them to local files for a module that runs in another process."""

from __future__ import annotations

import os
import shutil
from typing import Any

__all__ = ["download", "is_url", "remove", "upload", "url_version"]


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def url_version(url: str) -> str | None:
    """Size and the store's checksum / ETag / modification time; None if it is missing."""
    fs, path = _fs(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    tag = info.get("ETag") or info.get("etag") or info.get("checksum") or info.get("mtime")
    if tag is None:
        tag = info.get("LastModified") or info.get("created") or ""
    return f"{info.get('size')}:{tag}"


def download(url: str, local: str) -> None:
    fs, path = _fs(url)
    with fs.open(path, "rb") as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst)


def upload(local: str, url: str) -> None:
    """Copy a finished local file to the store; an object appears whole or not at all."""
    fs, path = _fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.makedirs(parent, exist_ok=True)
    with open(local, "rb") as src, fs.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(local)


def remove(url: str) -> None:
    fs, path = _fs(url)
    if fs.exists(path):
        fs.rm(path)
