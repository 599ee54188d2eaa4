"""Per-task directories: ``<work_dir>/<task uuid>/`` with ``result/``, ``exec/`` and ``resource/``.

Every task starts in a fresh, empty tree (mode 0700). Creating four directories and removing them
again cost more than a millisecond per task on the disks here, more than spawning the task, so a
tree that a task left exactly as it found it (three empty subdirectories, nothing else, modes
untouched) is kept under a spare name and renamed into place for the next task. Anything else is
removed as before.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

SUBDIRS = ("result", "exec", "resource")
MODE = 0o700
SPARES = 2
_SPARE_PREFIX = ".spare-"


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

    async def discard(self, path: Path) -> None:
        """Done with a task tree: keep it as a spare if the task left it pristine, else remove it."""
        if len(self._spares) < SPARES and _pristine(path):
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


def _pristine(path: Path) -> bool:
    """Exactly the three subdirectories, each empty, every mode still 0700, nothing a link."""
    try:
        with os.scandir(path) as entries:
            names = []
            for entry in entries:
                if entry.name not in SUBDIRS or not entry.is_dir(follow_symlinks=False):
                    return False
                names.append(entry.name)
        if len(names) != len(SUBDIRS):
            return False
        for folder in (path, *(path / sub for sub in SUBDIRS)):
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != MODE:
                return False
        for sub in SUBDIRS:
            with os.scandir(path / sub) as entries:
                if next(entries, None) is not None:
                    return False
    except OSError:
        return False
    return True
