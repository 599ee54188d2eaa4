"""Task directories: fresh and private for every task; a pristine one is reused, anything else removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mitosis.worker.taskdirs import SUBDIRS, Leftovers, TaskDirs, survey


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _fresh(path: Path) -> None:
    assert sorted(os.listdir(path)) == sorted(SUBDIRS)
    assert _mode(path) == 0o700
    for sub in SUBDIRS:
        assert os.listdir(path / sub) == [] and _mode(path / sub) == 0o700


async def test_a_pristine_tree_is_reused_under_the_next_name(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path)
    first = dirs.create("task-1")
    _fresh(first)
    inode = os.lstat(first).st_ino
    await dirs.discard(first)
    assert not first.exists()
    second = dirs.create("task-2")
    _fresh(second)
    assert os.lstat(second).st_ino == inode  # the same tree, renamed
    await dirs.discard(second)
    dirs.close()
    assert os.listdir(tmp_path) == []


async def test_anything_a_task_left_behind_means_a_new_tree(tmp_path: Path) -> None:
    def leave_file(p: Path) -> None:
        (p / "result" / "out.txt").write_text("x")

    def leave_top_file(p: Path) -> None:
        (p / "stdout.log").write_text("x")

    def nested_dir(p: Path) -> None:
        (p / "exec" / "deep").mkdir()

    def loosen_mode(p: Path) -> None:
        (p / "resource").chmod(0o777)

    def swap_for_link(p: Path) -> None:
        (p / "exec").rmdir()
        (p / "exec").symlink_to(tmp_path)

    def drop_subdir(p: Path) -> None:
        (p / "result").rmdir()

    for change in (leave_file, leave_top_file, nested_dir, loosen_mode, swap_for_link, drop_subdir):
        dirs = TaskDirs(tmp_path)
        tree = dirs.create("t")
        change(tree)
        await dirs.discard(tree)
        assert not tree.exists(), change.__name__
        assert os.listdir(tmp_path) == [], change.__name__  # removed, not kept as a spare
        again = dirs.create("t2")
        _fresh(again)
        await dirs.discard(again)
        dirs.close()
    assert os.listdir(tmp_path) == []


def test_survey_tells_outputs_and_pristine_apart(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path)
    cases = {
        "untouched": (lambda p: None, Leftovers(outputs=False, pristine=True)),
        "result file": (lambda p: (p / "result" / "a").write_text("x"), Leftovers(outputs=True, pristine=False)),
        "exec file": (lambda p: (p / "exec" / "a").write_text("x"), Leftovers(outputs=True, pristine=False)),
        "new task": (lambda p: (p / "new_task.json").write_text("{}"), Leftovers(outputs=True, pristine=False)),
        # Not uploaded, but the next task must not find it: no outputs, not pristine.
        "resource file": (lambda p: (p / "resource" / "a").write_text("x"), Leftovers(outputs=False, pristine=False)),
        "top file": (lambda p: (p / "notes").write_text("x"), Leftovers(outputs=False, pristine=False)),
        "loose mode": (lambda p: (p / "exec").chmod(0o755), Leftovers(outputs=False, pristine=False)),
        # A missing result/ is left to the packer (outputs), never reused.
        "no result dir": (lambda p: (p / "result").rmdir(), Leftovers(outputs=True, pristine=False)),
        "result is a link": (
            lambda p: ((p / "result").rmdir(), (p / "result").symlink_to(tmp_path)),
            Leftovers(outputs=True, pristine=False),
        ),
    }  # fmt: skip
    for i, (name, (change, expected)) in enumerate(cases.items()):
        tree = dirs.create(f"t{i}")
        change(tree)
        assert survey(tree) == expected, name
    assert survey(tmp_path / "gone") == Leftovers(outputs=True, pristine=False)
    dirs.close()


async def test_discard_trusts_a_pristine_verdict_and_checks_without_one(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path)
    tree = dirs.create("a")
    inode = os.lstat(tree).st_ino
    await dirs.discard(tree, survey(tree).pristine)
    assert os.lstat(dirs.create("b")).st_ino == inode  # kept as a spare on the caller's word
    dirty = tmp_path / "b"
    (dirty / "result" / "x").write_text("x")
    await dirs.discard(dirty, False)
    assert not dirty.exists() and os.listdir(tmp_path) == []
    tree = dirs.create("c")
    (tree / "exec" / "y").write_text("y")
    await dirs.discard(tree)  # no verdict: looked at, not reused
    assert os.listdir(tmp_path) == []
    dirs.close()
