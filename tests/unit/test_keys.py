"""Attachment key rules (mitosis.wire.keys): each bad key is refused with the reason it breaks."""

from __future__ import annotations

import pytest

from mitosis.wire.keys import MAX_OBJECT_KEY_BYTES, InvalidKey, attachment_key_problem, check_attachment_key


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "data/in.csv",
        "a/b/c.tar.gz",
        "dir with space/ü+%&=#?.txt",
        "a..b/..c/d..",
        ".hidden",
        "a/.b",
        "query",
    ],
)
def test_valid_keys(key: str) -> None:
    check_attachment_key(key, "grp")
    assert attachment_key_problem(key, "grp") is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "the key is empty"),
        ("/etc/passwd", "absolute path"),
        ("a//b", "contains '//'"),
        ("dir/", "ends with '/'"),
        ("../x", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("a/..", "'..' segment"),  # 0.6.8 let this one through (§11 Q4)
        ("..", "'..' segment"),
        ("./a", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("a\x00b", "U+0000 at position 1"),
        ("a\nb", "U+000A"),
        ("tab\there", "U+0009"),
        ("del\x7f", "U+007F"),
        ("bad\ud800", "not valid UTF-8"),
    ],
)
def test_invalid_keys_say_why(key: str, reason: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        check_attachment_key(key, "grp")
    assert reason in str(caught.value)
    assert attachment_key_problem(key) == str(caught.value)


def test_length_counts_group_and_utf8_bytes() -> None:
    group = "g" * 10
    fits = "k" * (MAX_OBJECT_KEY_BYTES - len(group) - 2)  # group + "/" + key = 1023 bytes
    check_attachment_key(fits, group)
    with pytest.raises(InvalidKey, match="is 1024 bytes in UTF-8, it must be shorter than 1024"):
        check_attachment_key(fits + "k", group)
    # Three bytes per character in UTF-8: a key short in characters can still be too long.
    with pytest.raises(InvalidKey, match="too long"):
        check_attachment_key("€" * 340, group)
    # Without a group only the path rules apply.
    check_attachment_key(fits + "k")
