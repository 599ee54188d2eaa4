"""Safe extraction of tar archives (artifacts, attachments) for the worker and the client.

Archives come from other users' tasks, so every entry is checked before anything is written: no
absolute names, no ``..`` components, no device or fifo files, no symbolic or hard links that point
outside the target directory, and caps on the size of each member, the total size and the number of
members. A check that depends on what is already on disk (a path that runs through a symbolic link
extracted earlier) is repeated right before each write. Any violation raises
:class:`UnsafeArchiveError`, which names the entry and the reason.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

DEFAULT_MAX_MEMBER_BYTES = 16 << 30
DEFAULT_MAX_TOTAL_BYTES = 64 << 30
DEFAULT_MAX_MEMBERS = 1_000_000

_COPY_CHUNK = 1 << 20


class UnsafeArchiveError(Exception):
    """An archive entry that would escape the target directory or exceed a cap."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"unsafe archive entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True)
class ExtractLimits:
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


def is_within(root: Path, candidate: Path) -> bool:
    """Whether ``candidate`` (already resolved) lies inside the resolved ``root``."""
    return candidate == root or root in candidate.parents


def safe_relative_path(name: str) -> PurePosixPath:
    """A member or resource name as a relative path, or ValueError saying why it is refused."""
    if not name or "\x00" in name:
        raise ValueError("empty name or NUL byte in name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ValueError("absolute path")
    if ".." in path.parts:
        raise ValueError("'..' component in path")
    return path


def _check_member(member: tarfile.TarInfo, root: Path, limits: ExtractLimits) -> None:
    name = member.name
    try:
        rel = safe_relative_path(name)
    except ValueError as exc:
        raise UnsafeArchiveError(name, str(exc)) from None
    if member.ischr() or member.isblk():
        raise UnsafeArchiveError(name, "device file")
    if member.isfifo():
        raise UnsafeArchiveError(name, "fifo")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(name, f"unsupported entry type {member.type!r}")
    if member.size > limits.max_member_bytes:
        raise UnsafeArchiveError(name, f"member size {member.size} exceeds the cap {limits.max_member_bytes}")
    if member.issym():
        link = PurePosixPath(member.linkname)
        if link.is_absolute():
            raise UnsafeArchiveError(name, f"symbolic link to absolute path {member.linkname!r}")
        target = Path(os.path.normpath(root / rel.parent / link))
        if not is_within(root, target):
            raise UnsafeArchiveError(name, f"symbolic link {member.linkname!r} points outside the target")
    if member.islnk():
        try:
            safe_relative_path(member.linkname)
        except ValueError as exc:
            raise UnsafeArchiveError(name, f"hard link to {member.linkname!r}: {exc}") from None


def _resolved_parent(root: Path, rel: PurePosixPath, name: str) -> Path:
    """The real directory a member is written into; it must still be inside the target."""
    parent = (root / rel).parent
    parent.mkdir(parents=True, exist_ok=True)
    real = parent.resolve()
    if not is_within(root, real):
        raise UnsafeArchiveError(name, "path runs through a link that leaves the target")
    return real


def _clear(dest: Path) -> None:
    """Remove what a later member replaces; never follow a link while doing so."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()


def safe_extract(
    archive: Path | IO[bytes],
    target: Path,
    *,
    limits: ExtractLimits | None = None,
) -> list[Path]:
    """Extract a (possibly compressed) tar archive into ``target``; return the written paths."""
    limits = limits or ExtractLimits()
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    written: list[Path] = []
    source = {"name": archive} if isinstance(archive, Path) else {"fileobj": archive}
    with tarfile.open(mode="r:*", **source) as tar:
        members = tar.getmembers()
        if len(members) > limits.max_members:
            raise UnsafeArchiveError(members[limits.max_members].name, "too many members")
        total = 0
        for member in members:
            _check_member(member, root, limits)
            total += member.size
            if total > limits.max_total_bytes:
                raise UnsafeArchiveError(
                    member.name, f"total size exceeds the cap {limits.max_total_bytes} bytes"
                )
        for member in members:
            written.append(_extract_one(tar, member, root))
    return written


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> Path:
    name = member.name
    rel = safe_relative_path(name)
    if not rel.parts:
        if member.isdir():
            return root
        raise UnsafeArchiveError(name, "entry names the target directory itself")
    parent = _resolved_parent(root, rel, name)
    dest = parent / rel.name
    if member.isdir():
        if dest.is_symlink():
            raise UnsafeArchiveError(name, "directory entry replaces a symbolic link")
        dest.mkdir(exist_ok=True)
        # Keep the owner able to write into it; special bits are never restored.
        os.chmod(dest, (member.mode & 0o777) | 0o700)
        return dest
    _clear(dest)
    if member.issym():
        target = Path(os.path.normpath(parent / member.linkname))
        if not is_within(root, target.resolve()):
            raise UnsafeArchiveError(name, f"symbolic link {member.linkname!r} points outside the target")
        os.symlink(member.linkname, dest)
        return dest
    if member.islnk():
        source_rel = safe_relative_path(member.linkname)
        source = (root / source_rel).resolve()
        if not is_within(root, source) or not source.is_file():
            raise UnsafeArchiveError(name, f"hard link to {member.linkname!r} outside the target")
        os.link(source, dest)
        return dest
    source_fh = tar.extractfile(member)
    if source_fh is None:
        raise UnsafeArchiveError(name, "member has no data")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with source_fh, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source_fh, out, _COPY_CHUNK)
    os.chmod(dest, member.mode & 0o777)
    os.utime(dest, (member.mtime, member.mtime))
    return dest
