"""String codecs for the Mitosis 0.6.8 wire format.

This module owns every textual value whose exact spelling matters for compatibility with the Rust
reference and its clients:

* datetimes in the ``time`` crate's human-readable serde form (``2025-03-04 08:57:59.5 +00:00:00``);
* humantime durations (parsing and formatting, humantime 2.3 grammar);
* byte sizes as understood by the ``parse-size`` crate, and a human-readable binary formatter;
* quota change strings (``+5``, ``-1GiB``, ``=20GB``) and task-filter operator strings (``>=3``);
* MD5 password arrays and the UUID spellings the reference accepts on input.

Everything here is pure and synchronous so the API schemas, the coordinator and the CLI share a
single definition of each format.
"""

from __future__ import annotations

import hashlib
import re
import signal
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

__all__ = [
    "DurationError",
    "SizeError",
    "apply_quota_change",
    "format_datetime",
    "format_duration",
    "format_size",
    "md5_digest_list",
    "parse_datetime",
    "parse_duration",
    "parse_duration_ns",
    "parse_number_filter",
    "parse_size",
    "parse_uuid",
    "validate_md5_list",
]

_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1
_I64_MIN = -(1 << 63)
_I32_MAX = (1 << 31) - 1
_I32_MIN = -(1 << 31)
_NS_PER_SEC = 1_000_000_000

# --------------------------------------------------------------------------------------------------
# Datetimes
# --------------------------------------------------------------------------------------------------

# The reference only ever emits this shape; the fraction is optional here because being lenient on
# input costs nothing and pynetmito-style callers sometimes drop it.
_WIRE_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}) (?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))? (?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}):(?P<os>[0-9]{2})",
    re.ASCII,
)


def format_datetime(dt: datetime) -> str:
    """Render ``dt`` as ``YYYY-MM-DD HH:MM:SS.F +00:00:00`` in UTC (naive values count as UTC)."""
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    # The time crate prints nanoseconds with trailing zeros removed but never an empty fraction.
    frac = f"{utc.microsecond:06d}".rstrip("0") or "0"
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{frac} +00:00:00"
    )


def parse_datetime(s: str) -> datetime:
    """Parse the wire datetime format or ISO 8601 / RFC 3339 into an aware UTC datetime."""
    match = _WIRE_DATETIME.fullmatch(s)
    try:
        if match is not None:
            parsed = _from_wire_match(match)
        else:
            parsed = datetime.fromisoformat(s)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"invalid datetime {s!r}: {exc}; expected e.g. '2025-03-04 08:57:59.123456 +00:00:00' "
            "or '2025-03-04T08:57:59Z'"
        ) from None


def _from_wire_match(match: re.Match[str]) -> datetime:
    year, month, day = (int(part) for part in match["date"].split("-"))
    # Python keeps microseconds only; extra digits are dropped rather than rounded so that a value
    # never moves into the next second.
    micro = int((match["frac"] or "0").ljust(9, "0")[:6])
    off_minutes, off_seconds = int(match["om"]), int(match["os"])
    if off_minutes > 59 or off_seconds > 59:
        raise ValueError("offset minutes and seconds must be below 60")
    offset = timedelta(hours=int(match["oh"]), minutes=off_minutes, seconds=off_seconds)
    if match["sign"] == "-":
        offset = -offset
    tz = timezone(offset)
    return datetime(year, month, day, int(match["h"]), int(match["m"]), int(match["s"]), micro, tz)


# --------------------------------------------------------------------------------------------------
# Durations (humantime 2.3)
# --------------------------------------------------------------------------------------------------


class DurationError(ValueError):
    """A string is not a valid humantime duration."""


_DURATION_HINT = "use e.g. 600s, 10m, 1h 30m, 7d"

# Rust's char::is_whitespace is the Unicode White_Space property, which differs from str.isspace
# (the latter also accepts the ASCII information separators U+001C..U+001F).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_DIGITS = "0123456789"
# Only ASCII letters and the micro sign (U+00B5, as in "µs") may form a unit name.
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\u00b5")


class _Unit(NamedTuple):
    # The integer part lands either in whole seconds or in nanoseconds, and so does the fraction;
    # which one decides where humantime truncates (see §3.3).
    int_secs: int
    int_nanos: int
    frac_secs: int
    frac_nanos: int


_NANO = _Unit(0, 1, 0, 0)
_MICRO = _Unit(0, 1_000, 0, 1_000)
_MILLI = _Unit(0, 1_000_000, 0, 1_000_000)
_SECOND = _Unit(1, 0, 0, _NS_PER_SEC)
_MINUTE = _Unit(60, 0, 0, 60 * _NS_PER_SEC)
_HOUR = _Unit(3_600, 0, 3_600, 0)
_DAY = _Unit(86_400, 0, 86_400, 0)
_WEEK = _Unit(604_800, 0, 604_800, 0)
_MONTH = _Unit(2_630_016, 0, 2_630_016, 0)  # 30.44 days
_YEAR = _Unit(31_557_600, 0, 31_557_600, 0)  # 365.25 days

_UNITS: dict[str, _Unit] = {
    **dict.fromkeys(("nanos", "nsec", "ns"), _NANO),
    **dict.fromkeys(("usec", "us", "\u00b5s"), _MICRO),
    **dict.fromkeys(("millis", "msec", "ms"), _MILLI),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), _SECOND),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), _MINUTE),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), _HOUR),
    **dict.fromkeys(("days", "day", "d"), _DAY),
    **dict.fromkeys(("weeks", "week", "wks", "wk", "w"), _WEEK),
    **dict.fromkeys(("months", "month", "M"), _MONTH),
    **dict.fromkeys(("years", "year", "yrs", "yr", "y"), _YEAR),
}


class _DurationParser:
    """Character-level port of humantime's parser so that acceptance matches it exactly.

    Two deliberate differences, both only widening what is accepted: a fraction that does not
    divide evenly is truncated (the spec's rule) instead of rejected, and error texts are ours.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.secs = 0
        self.nanos = 0

    def fail(self, reason: str) -> DurationError:
        return DurationError(f"invalid duration {self.text!r}: {reason}; {_DURATION_HINT}")

    def u64(self, value: int) -> int:
        if value > _U64_MAX:
            raise self.fail("the value is too large")
        return value

    def run(self) -> int:
        text, end = self.text, len(self.text)
        first = self.first_digit()
        if first is None:
            raise self.fail("it is empty")
        n = first
        while True:
            frac: tuple[int, int] | None = None
            unit_start = end
            # Number: digits, with whitespace allowed anywhere between them.
            while self.pos < end:
                c = text[self.pos]
                self.pos += 1
                if c in _DIGITS:
                    n = self.u64(n * 10 + int(c))
                elif c in _WHITESPACE:
                    continue
                elif c in _UNIT_CHARS:
                    unit_start = self.pos - 1
                    break
                elif c == ".":
                    frac, unit_start = self.fraction()
                    break
                else:
                    raise self.fail(f"unexpected character {c!r} at position {self.pos - 1}")
            # Unit: letters up to whitespace, a digit (next item) or the end.
            unit_end = end
            next_digit: int | None = None
            if unit_start < end:
                while self.pos < end:
                    c = text[self.pos]
                    self.pos += 1
                    if c in _DIGITS:
                        unit_end = self.pos - 1
                        next_digit = int(c)
                        break
                    if c in _WHITESPACE:
                        unit_end = self.pos - 1
                        break
                    if c not in _UNIT_CHARS:
                        raise self.fail(f"unexpected character {c!r} at position {self.pos - 1}")
            self.add_item(n, frac, text[unit_start:unit_end])
            if next_digit is None:
                next_digit = self.first_digit()
                if next_digit is None:
                    return self.secs * _NS_PER_SEC + self.nanos
            n = next_digit

    def first_digit(self) -> int | None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in _DIGITS:
                self.pos += 1
                return int(c)
            if c not in _WHITESPACE:
                raise self.fail(f"expected a number at position {self.pos}")
            self.pos += 1
        return None

    def fraction(self) -> tuple[tuple[int, int], int]:
        """Read the digits after '.'; return (numerator, denominator) and where the unit starts."""
        numerator, denominator = 0, 1
        unit_start = len(self.text)
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c in _DIGITS:
                denominator = self.u64(denominator * 10)
                numerator = self.u64(numerator * 10 + int(c))
            elif c in _WHITESPACE:
                continue
            elif c in _UNIT_CHARS:
                unit_start = self.pos - 1
                break
            else:
                raise self.fail(f"unexpected character {c!r} at position {self.pos - 1}")
        if denominator == 1:
            raise self.fail("a decimal point must be followed by digits")
        return (numerator, denominator), unit_start

    def add_item(self, n: int, frac: tuple[int, int] | None, name: str) -> None:
        unit = _UNITS.get(name)
        if unit is None:
            if not name:
                raise self.fail(f"a unit is needed after {n}, e.g. {n}s or {n}ms")
            raise self.fail(f"unknown unit {name!r}")
        self.add(self.u64(n * unit.int_secs), self.u64(n * unit.int_nanos))
        if frac is not None:
            if unit is _NANO:
                raise self.fail("fractions of nanoseconds are not supported")
            numerator, denominator = frac
            self.add(
                self.u64(numerator * unit.frac_secs) // denominator,
                self.u64(numerator * unit.frac_nanos) // denominator,
            )

    def add(self, secs: int, nanos: int) -> None:
        # Mirrors humantime's checked carry so overflow is reported exactly where it is there.
        nanos = self.u64(self.nanos + nanos)
        if nanos >= _NS_PER_SEC:
            secs = self.u64(secs + nanos // _NS_PER_SEC)
            nanos %= _NS_PER_SEC
        self.secs = self.u64(self.secs + secs)
        self.nanos = nanos


def parse_duration_ns(s: str) -> int:
    """Parse a humantime duration into whole nanoseconds (``DurationError`` on bad input)."""
    # humantime special-cases exactly "0"; "00" or " 0" still need a unit.
    if s == "0":
        return 0
    return _DurationParser(s).run()


def parse_duration(s: str) -> timedelta:
    """Parse a humantime duration; sub-microsecond parts are truncated to fit ``timedelta``."""
    nanos = parse_duration_ns(s)
    try:
        return timedelta(microseconds=nanos // 1_000)
    except OverflowError:
        raise DurationError(
            f"invalid duration {s!r}: longer than this implementation can represent; {_DURATION_HINT}"
        ) from None


def format_duration(value: timedelta | int) -> str:
    """Format a non-negative duration (``int`` = seconds) the way humantime does, e.g. ``1h 30m``."""
    if isinstance(value, timedelta):
        micros = value // timedelta(microseconds=1)
        if micros < 0:
            raise ValueError(f"cannot format a negative duration: {value}")
        secs, nanos = divmod(micros * 1_000, _NS_PER_SEC)
    else:
        if value < 0:
            raise ValueError(f"cannot format a negative duration: {value} seconds")
        secs, nanos = value, 0
    if secs == 0 and nanos == 0:
        return "0s"
    years, rest = divmod(secs, 31_557_600)
    months, rest = divmod(rest, 2_630_016)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    millis, rest = divmod(nanos, 1_000_000)
    micros_part, nanos_part = divmod(rest, 1_000)
    parts: list[str] = []
    for amount, word in ((years, "year"), (months, "month"), (days, "day")):
        if amount:
            parts.append(f"{amount}{word}{'s' if amount > 1 else ''}")
    for amount, suffix in (
        (hours, "h"),
        (minutes, "m"),
        (seconds, "s"),
        (millis, "ms"),
        (micros_part, "us"),
        (nanos_part, "ns"),
    ):
        if amount:
            parts.append(f"{amount}{suffix}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# Byte sizes (parse-size crate)
# --------------------------------------------------------------------------------------------------


class SizeError(ValueError):
    """A string is not a valid byte size."""


_SIZE_HINT = "use e.g. 512, 500MB, 20GiB, 1.5T or 1e9"
_DECIMAL_FACTORS = {p: 1000**i for i, p in enumerate("kmgtpe", start=1)}
_BINARY_FACTORS = {p: 1024**i for i, p in enumerate("kmgtpe", start=1)}


def parse_size(s: str) -> int:
    """Parse a byte size such as ``1.5 GiB``, ``20gb``, ``1e9`` or ``69_420`` into bytes (u64)."""

    def fail(reason: str) -> SizeError:
        return SizeError(f"invalid size {s!r}: {reason}; {_SIZE_HINT}")

    # Units are peeled off the very end of the raw text, so "5 KB " (trailing space) is invalid,
    # exactly as in parse-size.
    src = s
    multiplier = 1
    if src[-1:] in ("b", "B"):
        src = src[:-1]
    factors = _DECIMAL_FACTORS
    if src[-1:] in ("i", "I"):
        src = src[:-1]
        factors = _BINARY_FACTORS
    if src and src[-1].lower() in factors:
        multiplier = factors[src[-1].lower()]
        src = src[:-1]

    mantissa = 0
    frac_exp = 0  # power of ten the mantissa digits are shifted by
    exponent = 0
    state = "empty"
    for c in src:
        if c in _DIGITS:
            digit = int(c)
            if state in ("empty", "int"):
                if mantissa * 10 + digit <= _U64_MAX:
                    mantissa = mantissa * 10 + digit
                    state = "int"
                else:
                    # Beyond 64 bits of precision the remaining digits only round and scale.
                    mantissa += digit >= 5
                    state = "int_overflow"
                    frac_exp += 1
            elif state == "int_overflow":
                frac_exp += 1
            elif state == "frac":
                if mantissa * 10 + digit <= _U64_MAX:
                    mantissa = mantissa * 10 + digit
                    frac_exp -= 1
                else:
                    mantissa += digit >= 5
                    state = "frac_overflow"
            elif state == "pos_exp":
                exponent = exponent * 10 + digit
                if exponent > _I32_MAX:
                    raise fail("the exponent is too large")
            # parse-size ignores digits that would underflow its i32 exponent.
            elif state == "neg_exp" and exponent * 10 - digit >= _I32_MIN:
                exponent = exponent * 10 - digit
        elif c in "_ " or (c == "+" and state == "pos_exp"):
            continue
        elif c in "eE" and state in ("int", "frac", "int_overflow", "frac_overflow"):
            state = "pos_exp"
        elif c == "-" and state == "pos_exp":
            state = "neg_exp"
        elif c == "." and state == "int":
            state = "frac"
        elif c == "." and state == "int_overflow":
            state = "frac_overflow"
        else:
            raise fail(f"unexpected character {c!r}")
    if state == "empty":
        raise fail("no number given")

    total_exp = max(_I32_MIN, min(_I32_MAX, exponent + frac_exp))
    if total_exp >= 0:
        if total_exp > 19:
            raise fail("the value does not fit in 64 bits")
        scale: int = multiplier * pow(10, total_exp)
        result: int = mantissa * scale
        if scale > _U64_MAX or result > _U64_MAX:
            raise fail("the value does not fit in 64 bits")
        return result
    if total_exp < -38:
        return 0
    power: int = pow(10, -total_exp)
    # Round half up, as parse-size does with its 128-bit intermediate.
    rounded = (mantissa * multiplier + power // 2) // power
    if rounded > _U64_MAX:
        raise fail("the value does not fit in 64 bits")
    return rounded


_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_size(n: int) -> str:
    """Human-readable binary size with up to two decimals, e.g. ``512 B``, ``1.5 GiB``."""
    sign = "-" if n < 0 else ""
    magnitude = abs(n)
    index = 0
    while index + 1 < len(_SIZE_UNITS) and magnitude >= 1024 ** (index + 1):
        index += 1
    if index == 0:
        return f"{sign}{magnitude} B"
    number = f"{magnitude / 1024**index:.2f}".rstrip("0").rstrip(".")
    return f"{sign}{number} {_SIZE_UNITS[index]}"


# --------------------------------------------------------------------------------------------------
# Quota change strings and filter operators
# --------------------------------------------------------------------------------------------------


def _parse_rust_int(text: str, lo: int, hi: int) -> int:
    """Parse like Rust's ``str::parse`` for a signed integer; ValueError carries Rust's wording.

    Python's ``int()`` would also accept whitespace, underscores and non-ASCII digits, which the
    reference rejects, so the digits are walked by hand (errors are reported in the same order).
    """
    if not text:
        raise ValueError("cannot parse integer from empty string")
    negative = text[0] == "-"
    digits = text[1:] if text[0] in "+-" else text
    if not digits:
        raise ValueError("invalid digit found in string")
    value = 0
    for c in digits:
        if c not in _DIGITS:
            raise ValueError("invalid digit found in string")
        value = value * 10 + (-int(c) if negative else int(c))
        if value > hi:
            raise ValueError("number too large to fit in target type")
        if value < lo:
            raise ValueError("number too small to fit in target type")
    return value


def apply_quota_change(current: int, spec: str, *, sizes: bool) -> int:
    """Apply ``+N`` / ``-N`` / ``=N`` / ``N`` to ``current``.

    ``sizes=False`` (group quota): N is an i32 and the result is kept within 0..i32::MAX.
    ``sizes=True`` (storage quota): N is a parse-size byte count; results saturate at i64 bounds and
    may be negative.
    """
    op, rest = "=", spec
    if spec[:1] in ("+", "-", "="):
        op, rest = spec[0], spec[1:]
    if sizes:
        try:
            amount = min(parse_size(rest), _I64_MAX)
        except SizeError as exc:
            raise ValueError(f"invalid storage quota change {spec!r}: {exc}") from None
        if op == "+":
            return min(current + amount, _I64_MAX)
        if op == "-":
            return max(current - amount, _I64_MIN)
        return amount
    try:
        number = _parse_rust_int(rest, _I32_MIN, _I32_MAX)
    except ValueError as exc:
        raise ValueError(f"invalid group quota change {spec!r}: {exc}; use e.g. 10, +2, -1 or =8") from None
    result = current + number if op == "+" else current - number if op == "-" else number
    # The column is an i32 that must never go below zero.
    return max(0, min(result, _I32_MAX))


# Longest prefixes first so ">=" is not read as ">" followed by "=5".
_FILTER_OPS = (">=", "<=", "!=", ">", "<", "=")


def parse_number_filter(s: str) -> tuple[str, int]:
    """Split an operator string such as ``>=3`` or ``-1`` into (op, i32 value); no op means ``=``."""
    op, rest = "=", s
    for candidate in _FILTER_OPS:
        if s.startswith(candidate):
            op, rest = candidate, s[len(candidate) :]
            break
    try:
        return op, _parse_rust_int(rest, _I32_MIN, _I32_MAX)
    except ValueError as exc:
        raise ValueError(f"Failed to parse number from {rest}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Passwords and UUIDs
# --------------------------------------------------------------------------------------------------


def md5_digest_list(password: str) -> list[int]:
    """The wire form of a password: the 16 bytes of MD5 over its UTF-8 encoding, as ints."""
    return list(hashlib.md5(password.encode("utf-8")).digest())


def validate_md5_list(v: Sequence[int]) -> bytes:
    """Check a wire md5 array (exactly 16 ints in 0..255) and return the raw digest bytes."""
    if len(v) != 16:
        raise ValueError(f"md5 password must be 16 numbers in 0..255, got {len(v)}")
    for index, item in enumerate(v):
        # bool is an int subclass, but JSON true/false is not a byte.
        if type(item) is not int or not 0 <= item <= 255:
            raise ValueError(f"md5 password must be 16 numbers in 0..255, got {item!r} at index {index}")
    return bytes(v)


_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The four shapes the Rust uuid crate accepts; Python's uuid.UUID alone is laxer (hyphens anywhere).
_UUID_FORMS = re.compile(
    rf"{_HEX}{{32}}|{_HYPHENATED}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED}",
    re.ASCII,
)


def parse_uuid(s: str) -> uuid.UUID:
    """Parse a UUID given hyphenated, as 32 hex digits, ``{braced}`` or ``urn:uuid:``-prefixed."""
    if _UUID_FORMS.fullmatch(s) is None:
        raise ValueError(
            f"invalid UUID {s!r}: expected e.g. '67e55044-10b1-426f-9247-bb680e5fe0c8' "
            "(32 hex digits, optionally hyphenated, braced or urn:uuid: prefixed)"
        )
    return uuid.UUID(s)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def describe_exit_status(status: int | None) -> str:
    """Human text of a raw wait status (the wire's ``exit_status``, DECISIONS "exit status"):
    768 → ``exit 3``, 9 → ``killed by SIGKILL``, None → ``-``."""
    if status is None:
        return "-"
    low = status & 0x7F
    if low == 0:
        return f"exit {(status >> 8) & 0xFF}"
    if low == 0x7F:
        return f"stopped by {_signal_name((status >> 8) & 0xFF)}"
    core = " (core dumped)" if status & 0x80 else ""
    return f"killed by {_signal_name(low)}{core}"
