"""Safe extraction: every hostile entry kind is refused and nothing lands outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mitosis.archives import ExtractLimits, UnsafeArchiveError, safe_extract


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(target, outside): the extraction target and a sibling that must stay empty."""
    target = tmp_path / "sandbox" / "target"
    target.mkdir(parents=True)
    return target, tmp_path


def _outside_untouched(root: Path, target: Path, archive: Path) -> None:
    for path in root.rglob("*"):
        if path in (archive, target, target.parent) or target in path.parents:
            continue
        raise AssertionError(f"written outside the target: {path}")


def test_normal_archive_extracts(dirs: tuple[Path, Path]) -> None:
    target, root = dirs
    dir_info = tarfile.TarInfo("result")
    dir_info.type = tarfile.DIRTYPE
    dir_info.mode = 0o755
    link = tarfile.TarInfo("result/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "a.txt"
    hard = tarfile.TarInfo("result/hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "result/a.txt"
    archive = _archive(
        root / "ok.tar.gz",
        [
            (dir_info, None),
            _file("result/a.txt", b"hello"),
            _file("result/sub/b.txt", b"b"),
            (link, None),
            (hard, None),
        ],
    )
    written = safe_extract(archive, target)
    assert (target / "result" / "a.txt").read_bytes() == b"hello"
    assert (target / "result" / "sub" / "b.txt").read_bytes() == b"b"
    assert (target / "result" / "link").read_bytes() == b"hello"
    assert (target / "result" / "hard").read_bytes() == b"hello"
    assert len(written) == 5


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_file("/abs/evil.txt"), "absolute path"),
        (_file("../evil.txt"), "'..'"),
        (_file("a/../../evil.txt"), "'..'"),
        (_special("link", tarfile.SYMTYPE, "../../outside"), "points outside"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "absolute"),
        (_special("hard", tarfile.LNKTYPE, "../outside"), "hard link"),
        (_special("hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
        (_special("dev", tarfile.CHRTYPE), "device"),
        (_special("blk", tarfile.BLKTYPE), "device"),
        (_special("fifo", tarfile.FIFOTYPE), "fifo"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-escape",
        "symlink-absolute",
        "hardlink-escape",
        "hardlink-absolute",
        "chardev",
        "blockdev",
        "fifo",
    ],
)
def test_hostile_entries_rejected(
    dirs: tuple[Path, Path], member: tuple[tarfile.TarInfo, bytes | None], reason: str
) -> None:
    target, root = dirs
    archive = _archive(root / "bad.tar.gz", [_file("first.txt"), member])
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        safe_extract(archive, target)
    assert info.value.entry == member[0].name
    # Checks run before any write: not even the harmless first member is extracted.
    assert list(target.iterdir()) == []
    _outside_untouched(root, target, archive)


def test_symlink_chain_escape_rejected(dirs: tuple[Path, Path]) -> None:
    """`up -> x/..` looks inside, but becomes the target's parent once `x -> .` exists."""
    target, root = dirs
    archive = _archive(
        root / "chain.tar.gz",
        [_special("up", tarfile.SYMTYPE, "x/.."), _special("x", tarfile.SYMTYPE, "."), _file("up/evil.txt")],
    )
    with pytest.raises(UnsafeArchiveError, match="leaves the target"):
        safe_extract(archive, target)
    assert not (target.parent / "evil.txt").exists()


def test_oversized_member_rejected(dirs: tuple[Path, Path]) -> None:
    target, root = dirs
    archive = _archive(root / "big.tar.gz", [_file("small", b"1"), _file("big", b"x" * 2048)])
    with pytest.raises(UnsafeArchiveError, match="member size 2048 exceeds") as info:
        safe_extract(archive, target, limits=ExtractLimits(max_member_bytes=1024))
    assert info.value.entry == "big"
    assert list(target.iterdir()) == []


def test_oversized_total_rejected(dirs: tuple[Path, Path]) -> None:
    target, root = dirs
    archive = _archive(root / "total.tar.gz", [_file(f"f{i}", b"x" * 600) for i in range(4)])
    with pytest.raises(UnsafeArchiveError, match="total size") as info:
        safe_extract(archive, target, limits=ExtractLimits(max_member_bytes=1000, max_total_bytes=2000))
    assert info.value.entry == "f3"
    assert list(target.iterdir()) == []


def test_too_many_members_rejected(dirs: tuple[Path, Path]) -> None:
    target, root = dirs
    archive = _archive(root / "many.tar.gz", [_file(f"f{i}") for i in range(5)])
    with pytest.raises(UnsafeArchiveError, match="too many members"):
        safe_extract(archive, target, limits=ExtractLimits(max_members=3))
