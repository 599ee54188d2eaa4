"""The 0.6.8 archive layout (behavior.md §6.8)."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

from mitosis.worker.packing import pack_dir, pack_std_log


def _members(path: Path) -> list[tarfile.TarInfo]:
    with gzip.open(path) as fh:
        fh.read(1)  # really gzip
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def test_result_tree_dirs_first_then_files(tmp_path: Path) -> None:
    src = tmp_path / "result"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("bb")
    (src / "sub" / "deeper" / "c.bin").write_bytes(b"ccc")
    os.chmod(src / "a.txt", 0o600)
    dest = tmp_path / "result.tar.gz"
    assert pack_dir(src, "result", dest)
    members = _members(dest)
    names = [m.name for m in members]
    assert names == [
        "result",
        "result/sub",
        "result/sub/deeper",
        "result/a.txt",
        "result/sub/b.txt",
        "result/sub/deeper/c.bin",
    ]
    assert [m.isdir() for m in members] == [True, True, True, False, False, False]
    assert members[3].mode == 0o600 and members[3].size == 1
    with tarfile.open(dest) as tar:
        assert tar.extractfile("result/sub/deeper/c.bin").read() == b"ccc"  # type: ignore[union-attr]


def test_exec_log_top_level_name_and_links_followed(tmp_path: Path) -> None:
    src = tmp_path / "exec"
    src.mkdir()
    target = tmp_path / "elsewhere.txt"
    target.write_text("content")
    (src / "link.txt").symlink_to(target)
    dest = tmp_path / "exec-log.tar.gz"
    assert pack_dir(src, "exec-log", dest)
    members = _members(dest)
    assert [m.name for m in members] == ["exec-log", "exec-log/link.txt"]
    assert members[1].isreg() and members[1].size == len("content")


def test_empty_or_missing_dir_gives_no_archive(tmp_path: Path) -> None:
    (tmp_path / "result").mkdir()
    assert not pack_dir(tmp_path / "result", "result", tmp_path / "r.tar.gz")
    assert not pack_dir(tmp_path / "missing", "exec-log", tmp_path / "e.tar.gz")
    assert not (tmp_path / "r.tar.gz").exists() and not (tmp_path / "e.tar.gz").exists()


def test_std_log_two_files_mode_0664_no_dir_entry(tmp_path: Path) -> None:
    (tmp_path / "stdout.log").write_text("out\n")
    (tmp_path / "stderr.log").write_text("")
    dest = tmp_path / "std-log.tar.gz"
    pack_std_log(tmp_path / "stdout.log", tmp_path / "stderr.log", dest)
    members = _members(dest)
    assert [m.name for m in members] == ["std-log/stdout.log", "std-log/stderr.log"]
    assert all(m.isreg() and m.mode == 0o664 for m in members)
    assert [m.size for m in members] == [4, 0]
    with tarfile.open(dest) as tar:
        assert tar.extractfile("std-log/stdout.log").read() == b"out\n"  # type: ignore[union-attr]
