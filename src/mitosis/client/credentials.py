"""The credential file shared with 0.6.8: one ``username:token`` line per user, no trailing newline.

Location: the configured ``credential_path`` or ``<user config dir>/mitosis/credentials``. The file
is written with mode 0600 because it holds bearer tokens.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mitosis.config import default_credential_path


class CredentialStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_credential_path()

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.split("\n") if line.strip()]

    def get(self, username: str | None = None) -> tuple[str, str] | None:
        """The stored (username, token): the named user's line, or the first line when unnamed."""
        for line in self._lines():
            name, sep, token = line.partition(":")
            if not sep:
                continue
            if username is None or name == username:
                return name, token.strip()
        return None

    def put(self, username: str, token: str) -> None:
        """Replace the user's line (or append one), atomically and with mode 0600."""
        lines = [ln for ln in self._lines() if ln.partition(":")[0] != username]
        lines.append(f"{username}:{token}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, username: str) -> None:
        lines = [ln for ln in self._lines() if ln.partition(":")[0] != username]
        if self.path.exists():
            self.path.write_text("\n".join(lines), encoding="utf-8")
