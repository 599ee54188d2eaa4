"""The 0.6.8 artifact archive format (behavior.md §6.8): gzip-compressed GNU tar files.

``result.tar.gz`` / ``exec-log.tar.gz`` hold a directory tree under the top-level name ``result/`` /
``exec-log/``: a directory entry for the top level and every sub-directory first, then the files.
Symbolic links are followed (their target's content is archived), as 0.6.8 does. An empty or
missing directory produces no archive. ``std-log.tar.gz`` holds exactly two regular-file entries,
``std-log/stdout.log`` and ``std-log/stderr.log`` (mode 0664, no directory entry).

Everything streams from disk, so packing needs bounded memory whatever the task produced. The
functions are blocking; the worker runs them in a thread.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# flate2's default level, which 0.6.8 uses; Python's tarfile would otherwise pick 9 (slower).
_GZIP_LEVEL = 6
STD_LOG_MODE = 0o664


def _collect(src: Path) -> tuple[list[Path], list[Path]]:
    """Sub-directories and files under ``src`` (links followed, loops skipped), both sorted."""
    dirs: list[Path] = []
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for current, dirnames, filenames in os.walk(src, followlinks=True):
        st = os.stat(current)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            # A symbolic link back to an ancestor: archiving it would never end.
            log.warning("skipping %s: directory loop through a symbolic link", current)
            dirnames.clear()
            continue
        seen.add(key)
        dirnames.sort()
        base = Path(current)
        if base != src:
            dirs.append(base)
        for name in sorted(filenames):
            path = base / name
            if path.is_file():
                files.append(path)
            else:
                log.warning("skipping %s: not a regular file (or a dangling link)", path)
    return dirs, files


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    st = os.stat(path)  # follows links: the archive holds the content, never the link
    info = tarfile.TarInfo(arcname)
    info.mode = st.st_mode & 0o7777
    info.mtime = int(st.st_mtime)
    info.uid = st.st_uid
    info.gid = st.st_gid
    if os.path.isdir(path):
        info.type = tarfile.DIRTYPE
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    return info


def pack_dir(src: Path, top: str, dest: Path) -> bool:
    """Archive ``src`` as ``top/...`` into ``dest``; False (and no file) when ``src`` is empty."""
    if not src.is_dir() or not any(src.iterdir()):
        return False
    dirs, files = _collect(src)
    with tarfile.open(dest, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=_GZIP_LEVEL) as tar:
        tar.addfile(_tarinfo(src, top))
        for directory in dirs:
            tar.addfile(_tarinfo(directory, f"{top}/{directory.relative_to(src).as_posix()}"))
        for file in files:
            info = _tarinfo(file, f"{top}/{file.relative_to(src).as_posix()}")
            with file.open("rb") as fh:
                # The file may grow while we pack (a leftover grandchild): archive what stat saw.
                tar.addfile(info, fh)
    return True


def pack_std_log(stdout: Path, stderr: Path, dest: Path) -> None:
    """Write ``std-log.tar.gz`` from the captured output files (missing files count as empty)."""
    now = int(time.time())
    with tarfile.open(dest, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=_GZIP_LEVEL) as tar:
        for source, name in ((stdout, "stdout.log"), (stderr, "stderr.log")):
            info = tarfile.TarInfo(f"std-log/{name}")
            info.type = tarfile.REGTYPE
            info.mode = STD_LOG_MODE
            info.mtime = now
            if source.is_file():
                info.size = source.stat().st_size
                with source.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                info.size = 0
                tar.addfile(info)
