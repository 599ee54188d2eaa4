"""Attachment key rules, shared by the coordinator (which enforces them) and the client (which checks early).

A key names one object inside a group: a relative, already-normalised path such as ``data/in.csv``.
0.6.8 only refused ``/./``, ``/../`` and ``//`` inside ``<group>/<key>`` (so ``a/..`` slipped through,
behavior.md §11 Q4); we refuse every key that could name a different place than it spells, or that
a file system or terminal would mangle, and say which rule the key broke.
"""

from __future__ import annotations

MAX_OBJECT_KEY_BYTES = 1024
"""``<group>/<key>`` must be shorter than this many UTF-8 bytes (0.6.8's S3 key limit)."""


class InvalidKey(ValueError):
    """The key breaks a rule; ``str(error)`` says which one and how to fix it."""


def _control_char(key: str) -> tuple[int, str] | None:
    for index, char in enumerate(key):
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            return index, char
    return None


def check_attachment_key(key: str, group_name: str | None = None) -> None:
    """Raise InvalidKey unless ``key`` is a valid attachment key (of ``group_name``, for the length rule)."""
    if not key:
        raise InvalidKey("the key is empty; give a relative path such as data/input.csv")
    bad = _control_char(key)
    if bad is not None:
        index, char = bad
        raise InvalidKey(
            f"the key contains the control character U+{ord(char):04X} at position {index}; "
            "keys may not contain NUL, newlines, tabs or other control characters"
        )
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("the key is not valid UTF-8 text") from None
    if key.startswith("/"):
        raise InvalidKey("the key is an absolute path (it starts with '/'); drop the leading '/'")
    segments = key.split("/")
    if "" in segments:
        where = "ends with '/'" if segments[-1] == "" else "contains '//'"
        raise InvalidKey(f"the key {where}, which makes an empty path segment; name a file, e.g. dir/file")
    if ".." in segments:
        raise InvalidKey("the key contains a '..' segment; keys may not step out of their directory")
    if "." in segments:
        raise InvalidKey("the key contains a '.' segment; write the path without './'")
    if group_name is not None:
        total = len(group_name.encode("utf-8")) + 1 + len(encoded)
        if total >= MAX_OBJECT_KEY_BYTES:
            raise InvalidKey(
                f"the key is too long: '<group>/<key>' is {total} bytes in UTF-8, "
                f"it must be shorter than {MAX_OBJECT_KEY_BYTES}"
            )


def attachment_key_problem(key: str, group_name: str | None = None) -> str | None:
    """What is wrong with ``key``, or None when it is valid."""
    try:
        check_attachment_key(key, group_name)
    except InvalidKey as exc:
        return str(exc)
    return None
