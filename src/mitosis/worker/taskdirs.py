"""Per-task directories: ``<work_dir>/<task uuid>/`` with ``result/``, ``exec/`` and ``resource/``.

Every task starts in a fresh, empty tree (mode 0700). Creating four directories and removing them
again cost more than a millisecond per task on the disks here, more than spawning the task, so a
tree that a task left exactly as it found it (three empty subdirectories, nothing else, modes
untouched) is kept under a spare name and renamed into place for the next task. Anything else is
removed as before. :func:`survey` lists each directory of a tree once after its task
ended and answers both questions the worker asks then: is there anything to upload, and can the
tree be reused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

SUBDIRS = ("result", "exec", "resource")
MODE = 0o700
SPARES = 2
_SPARE_PREFIX = ".spare-"


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What an ended task left in its tree."""

    outputs: bool
    """``new_task.json``, or anything in ``result/`` or ``exec/`` (or either one missing or
    unreadable): the worker must look further (pack, upload, submit) before committing."""
    pristine: bool
    """Exactly as created (see :func:`_pristine`): the tree may be reused for the next task."""


class TaskDirs:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._spares: list[Path] = []
        self._serial = 0

    def create(self, name: str) -> Path:
        """A fresh empty task tree named ``name`` (a task uuid)."""
        path = self.work_dir / name
        while self._spares:
            spare = self._spares.pop()
            try:
                os.rename(spare, path)
            except OSError:
                shutil.rmtree(spare, ignore_errors=True)
                continue
            return path
        for sub in ("", *SUBDIRS):
            (path / sub).mkdir(mode=MODE, parents=True, exist_ok=True)
        return path

    async def discard(self, path: Path, pristine: bool | None = None) -> None:
        """Done with a task tree: keep it as a spare if the task left it pristine, else remove it.

        ``pristine`` is a :func:`survey` verdict the caller took after the task ended and has not
        written to the tree since; without it the tree is looked at here."""
        if pristine is None and len(self._spares) < SPARES:
            pristine = survey(path).pristine
        if pristine and len(self._spares) < SPARES:
            self._serial += 1
            spare = self.work_dir / f"{_SPARE_PREFIX}{self._serial}"
            try:
                os.rename(path, spare)
            except OSError:
                pass
            else:
                self._spares.append(spare)
                return
        await asyncio.to_thread(shutil.rmtree, path, True)

    def close(self) -> None:
        """Remove the spares (the worker is stopping)."""
        for spare in self._spares:
            shutil.rmtree(spare, ignore_errors=True)
        self._spares.clear()


def _empty_dir(path: str) -> bool:
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _modes_untouched(root: str) -> bool:
    """The tree and its subdirectories are still real directories (not links) with mode 0700."""
    try:
        for folder in (root, *(f"{root}/{sub}" for sub in SUBDIRS)):
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != MODE:
                return False
    except OSError:
        return False
    return True


def survey(path: Path) -> Leftovers:
    """What the ended task left in its tree ``path``, from one listing of each directory.

    Pristine means exactly the three subdirectories, each empty, none a link, every mode still
    0700."""
    root = str(path)  # plain strings: this runs after every task, and pathlib's joins cost
    try:
        top = set(os.listdir(root))
    except OSError:
        return Leftovers(outputs=True, pristine=False)
    empty = {sub: sub in top and _empty_dir(f"{root}/{sub}") for sub in SUBDIRS}
    outputs = "new_task.json" in top or not (empty["result"] and empty["exec"])
    pristine = len(top) == len(SUBDIRS) and all(empty.values()) and _modes_untouched(root)
    return Leftovers(outputs=outputs, pristine=pristine)
