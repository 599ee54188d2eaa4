"""Tests for mitosis.wire.codecs: spec examples, reference edge cases and round-trip properties."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mitosis.wire.codecs import (
    DurationError,
    SizeError,
    apply_quota_change,
    format_datetime,
    format_duration,
    format_size,
    md5_digest_list,
    parse_datetime,
    parse_duration,
    parse_duration_ns,
    parse_number_filter,
    parse_size,
    parse_uuid,
    validate_md5_list,
)

I32_MAX = 2**31 - 1
I32_MIN = -(2**31)
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)
U64_MAX = 2**64 - 1
S = 1_000_000_000  # nanoseconds per second

WIRE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.(0|\d{0,8}[1-9]) \+00:00:00", re.ASCII)

aware_datetimes = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=7, seconds=15))]
    ),
)

# --------------------------------------------------------------------------------------------------
# Datetimes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2025, 3, 4, 8, 57, 59, 123456, tzinfo=UTC), "2025-03-04 08:57:59.123456 +00:00:00"),
        (datetime(2025, 3, 4, 8, 57, 59, tzinfo=UTC), "2025-03-04 08:57:59.0 +00:00:00"),
        (datetime(2025, 3, 4, 8, 57, 59, 500000, tzinfo=UTC), "2025-03-04 08:57:59.5 +00:00:00"),
        (datetime(2025, 3, 4, 8, 57, 59, 120), "2025-03-04 08:57:59.00012 +00:00:00"),  # naive = UTC
        (
            datetime(2025, 3, 4, 10, 57, 59, 1, tzinfo=timezone(timedelta(hours=2))),
            "2025-03-04 08:57:59.000001 +00:00:00",
        ),
        (datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02 03:04:05.0 +00:00:00"),
    ],
)
def test_format_datetime_is_byte_exact(value: datetime, expected: str) -> None:
    assert format_datetime(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04 08:57:59.123456 +00:00:00", datetime(2025, 3, 4, 8, 57, 59, 123456, tzinfo=UTC)),
        ("2025-03-04 08:57:59.0 +00:00:00", datetime(2025, 3, 4, 8, 57, 59, tzinfo=UTC)),
        ("2025-03-04 08:57:59 +00:00:00", datetime(2025, 3, 4, 8, 57, 59, tzinfo=UTC)),
        ("2025-03-04 08:57:59.123456789 +00:00:00", datetime(2025, 3, 4, 8, 57, 59, 123456, tzinfo=UTC)),
        ("2025-03-04 10:57:59.5 +02:00:00", datetime(2025, 3, 4, 8, 57, 59, 500000, tzinfo=UTC)),
        ("2025-03-04 08:57:59.5 -01:30:15", datetime(2025, 3, 4, 10, 28, 14, 500000, tzinfo=UTC)),
        ("2024-01-15T10:30:00Z", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T10:30:00+00:00", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T12:30:00.25+02:00", datetime(2024, 1, 15, 10, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_datetime_examples(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-13-04 08:57:59.0 +00:00:00",
        "2025-03-04 08:57:59.0 +00:61:00",
        "2025-03-04 08:57:59.0 UTC",
        "2025-03-04  08:57:59.0 +00:00:00",
        "2025-03-04 08:57:59.0 +00:00:00 ",
        "\uff12\uff10\uff12\uff15-03-04 08:57:59.0 +00:00:00",  # fullwidth digits
    ],
)
def test_parse_datetime_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid datetime"):
        parse_datetime(text)


@given(aware_datetimes)
def test_datetime_round_trip_and_shape(value: datetime) -> None:
    text = format_datetime(value)
    assert WIRE_SHAPE.fullmatch(text), text
    assert parse_datetime(text) == value
    assert format_datetime(parse_datetime(text)) == text


@given(aware_datetimes)
def test_parse_datetime_accepts_isoformat(value: datetime) -> None:
    assert parse_datetime(value.isoformat()) == value


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("0s", 0),
        ("10min", 600),
        ("1h 30m", 5400),
        ("1h30m", 5400),
        ("7d", 604800),
        ("3600s", 3600),
        ("1.5h", 5400),
        ("0.05h", 180),
        ("0.5min", 30),
        ("1 0s", 10),
        ("  2h\t15m ", 8100),
        ("20 min 17 sec ", 1217),
        ("2 weeks", 1209600),
        ("1month", 2630016),
        ("12M", 31560192),
        ("1year", 31557600),
        ("17y", 536479200),
        ("1.5d", 129600),
        ("2.5hrs", 9000),
        ("1.5minutes", 90),
    ],
)
def test_parse_duration_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration_ns(text) == seconds * S


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("17nsec", 17),
        ("33ns", 33),
        ("3usec", 3000),
        ("163\u00b5s", 163000),
        ("6ms", 6_000_000),
        ("4.2s", 4 * S + 200_000_000),
        ("1.123456789s", S + 123_456_789),
        ("3.001us", 3001),
        ("31.000001ms", 31_000_001),
        ("7.120us 3ns", 7123),
        ("1.234s0.345ms0.678us0ns", S + 234_345_678),
        ("1.234s 1.345ms 1.678us 1ns", S + 235_346_679),
        ("1. 5s", S + 500_000_000),
        ("999999999ns 1ns", S),
        # Truncation of inexact fractions (spec rule): 1/3 h = 1200 s, 1e-10 s -> 0 ns.
        ("0.3333333333h", 1199 * S),
        ("1.0000000002s", S),
        ("0.00000005d", 0),
    ],
)
def test_parse_duration_nanos(text: str, nanos: int) -> None:
    assert parse_duration_ns(text) == nanos


def test_parse_duration_truncates_below_microseconds_for_timedelta() -> None:
    assert parse_duration("1us 999ns") == timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("10", "unit is needed"),
        ("00", "unit is needed"),
        (" 0", "unit is needed"),
        ("10 months 1", "unit is needed"),
        ("10 parsecs", "unknown unit 'parsecs'"),
        ("10nights", "unknown unit 'nights'"),
        ("1S", "unknown unit 'S'"),
        ("5 m s", "expected a number"),
        ("222nsec221nanosmsec7s", "unknown unit 'nanosmsec'"),
        ("1.s", "decimal point"),
        ("1.", "decimal point"),
        ("1..s", "unexpected character '.'"),
        (".5s", "expected a number"),
        (".", "expected a number"),
        ("-5s", "expected a number"),
        ("+5s", "expected a number"),
        ("1~", "unexpected character '~'"),
        ("1N\u00e5", "unexpected character"),
        ("1h,2m", "unexpected character ','"),
        ("5\u03bcs", "unexpected character"),  # Greek mu is not the micro sign
        ("17.5nsec", "nanoseconds"),
        ("0.5ns", "nanoseconds"),
        ("100000000000000000000ns", "too large"),
        ("100000000000000000000s", "too large"),
        ("18446744073709551616s", "too large"),
        ("10000000000000y", "too large"),
        ("1000000000000000M", "too large"),
        ("18446744073709551615s 1s", "too large"),
        ("1.00000000000000000000s", "too large"),  # 20 fraction digits overflow the denominator
        ("0.20000000000s", "too large"),  # numerator x 10^9 exceeds u64, as in humantime
        ("1\x1fs", "unexpected character"),  # not Unicode White_Space, unlike str.isspace()
    ],
)
def test_parse_duration_errors(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration_ns(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"invalid duration {text!r}: ")
    assert "1h 30m" in message


def test_duration_error_is_value_error_with_examples() -> None:
    with pytest.raises(ValueError, match=r"unknown unit 'parsecs'; use e\.g\. 600s, 10m, 1h 30m, 7d"):
        parse_duration("10 parsecs")


def test_parse_duration_max_u64_seconds_ok_but_not_timedelta() -> None:
    assert parse_duration_ns("18446744073709551615s") == U64_MAX * S
    with pytest.raises(DurationError, match="represent"):
        parse_duration("18446744073709551615s")


def test_parse_duration_accepts_unicode_whitespace() -> None:
    assert parse_duration_ns("1h\u00a030m\u3000") == 5400 * S


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0s"),
        (600, "10m"),
        (5400, "1h 30m"),
        (86400, "1day"),
        (604800, "7days"),
        (90061, "1day 1h 1m 1s"),
        (9420, "2h 37m"),
        (31557600, "1year"),
        (2 * 31557600 + 2630016 + 1, "2years 1month 1s"),
        (2 * 2630016, "2months"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=32), "32ms"),
        (timedelta(microseconds=123), "123us"),
        (timedelta(seconds=1, microseconds=1001), "1s 1ms 1us"),
        (timedelta(hours=1, minutes=30), "1h 30m"),
    ],
)
def test_format_duration_examples(value: timedelta | int, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize("value", [-1, timedelta(microseconds=-1)])
def test_format_duration_rejects_negative(value: timedelta | int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(value)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=999_999_998)))
def test_duration_round_trip_timedelta(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=U64_MAX))
def test_duration_round_trip_seconds(seconds: int) -> None:
    assert parse_duration_ns(format_duration(seconds)) == seconds * S


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["s", "sec", "seconds", "m", "h", "d"]))
def test_duration_whitespace_inside_number_is_ignored(n: int, unit: str) -> None:
    spaced = " ".join(str(n)) + " " + unit
    assert parse_duration_ns(spaced) == parse_duration_ns(f"{n}{unit}")


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_duration_concatenation_adds(hours: int, minutes: int) -> None:
    expected = (hours * 3600 + minutes * 60) * S
    assert parse_duration_ns(f"{hours}h{minutes}m") == expected
    assert parse_duration_ns(f"{hours}h {minutes}min") == expected


@given(
    st.integers(min_value=0, max_value=10**6),
    # <= 8 digits keeps numerator x unit within u64 (humantime's own limit, tested separately).
    st.text(alphabet="0123456789", min_size=1, max_size=8),
    st.sampled_from([("h", 3600 * S, S), ("d", 86400 * S, S), ("s", S, 1), ("min", 60 * S, 1)]),
)
def test_duration_fraction_uses_integer_truncation(
    whole: int, digits: str, unit: tuple[str, int, int]
) -> None:
    name, unit_ns, granularity = unit
    numerator, denominator = int(digits), 10 ** len(digits)
    expected = whole * unit_ns + numerator * unit_ns // granularity // denominator * granularity
    assert parse_duration_ns(f"{whole}.{digits}{name}") == expected


# --------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("30", 30),
        ("_5_", 5),
        (" 69_420_000", 69_420_000),
        ("1 234 567", 1_234_567),
        ("1 B", 1),
        ("1kB", 1000),
        ("10 KB", 10_000),
        ("2MB", 2_000_000),
        ("20GB", 20_000_000_000),
        ("5gb", 5_000_000_000),
        ("4TB", 4 * 10**12),
        ("5PB", 5 * 10**15),
        ("6EB", 6 * 10**18),
        ("7 KiB", 7 << 10),
        ("2ki", 2048),
        ("1mib", 1 << 20),
        ("9 GiB", 9 << 30),
        ("12 EiB", 12 << 60),
        ("1.5 GiB", 3 << 29),
        ("0.2 MiB", 209715),
        ("1.1 K", 1100),
        ("1.2345 K", 1235),
        ("5.k", 5000),
        ("0.0025KB", 3),
        ("0.333333 KB", 333),
        ("2.666666 KB", 2667),
        ("14.2e+8", 1_420_000_000),
        ("1e2 KIB", 102_400),
        ("1E+6", 1_000_000),
        ("1e-4 MiB", 105),
        ("5.7E3", 5700),
        ("2e+0_9", 2_000_000_000),
        ("3.141_592_653_589_793_238e", 3_141_592_653_589_793_238),
        ("1.000_000_000_000_000_001 EB", 1_000_000_000_000_000_001),
        ("18_446_744_073_709_551_615", U64_MAX),
        ("18.446_744_073_709_551_615 EB", U64_MAX),
        ("20_000_000_000_000_000_000e-18", 20),
        ("98_765_432_109_876_543_210e-16", 9877),
        ("0.01e21", 10**19),
        ("3.333_333_333_333_333_333_333_333_333_333_333_333_333_333_333_333 EB", 3_333_333_333_333_333_333),
        ("123_456_789_012_345_678_901_234_567.890e-16", 12_345_678_901),
        ("4e-77777777777777777777", 0),
        ("0.1e-2147483648", 0),
        ("184467440737095516150e-38EiB", 2),
    ],
)
def test_parse_size_examples(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no number"),
        ("k", "no number"),
        ("kib", "no number"),
        ("  ", "no number"),
        ("__", "no number"),
        (".", "unexpected character '.'"),
        (".5k", "unexpected character '.'"),
        ("a", "unexpected character 'a'"),
        ("-1", "unexpected character '-'"),
        ("1,5", "unexpected character ','"),
        ("1e+f", "unexpected character 'f'"),
        ("1e0.5", "unexpected character '.'"),
        ("1 ZiB", "unexpected character 'Z'"),
        ("5 KB ", "unexpected character 'K'"),
        ("1\u0661", "unexpected character"),
        ("18_446_744_073_709_551_616", "64 bits"),
        ("18.446_744_073_709_551_616 EB", "64 bits"),
        ("1e21", "64 bits"),
        ("3e+66666666666666666666", "exponent"),
        ("0e20", "64 bits"),
    ],
)
def test_parse_size_errors(text: str, fragment: str) -> None:
    with pytest.raises(SizeError) as info:
        parse_size(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
    assert "20GiB" in str(info.value)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (3 << 29, "1.5 GiB"),
        (16_000_000_000, "14.9 GiB"),
        (1 << 60, "1 EiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_format_size_examples(n: int, expected: str) -> None:
    assert format_size(n) == expected


@given(st.integers(min_value=0, max_value=I64_MAX))
def test_parse_size_of_formatted_value_is_close(n: int) -> None:
    text = format_size(n)
    unit = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"].index(text.split()[1])
    assert abs(parse_size(text) - n) <= unit // 200 + 1


@given(st.integers(min_value=0, max_value=U64_MAX), st.sampled_from(["", "B", " b", " "]))
def test_parse_size_plain_integers(n: int, suffix: str) -> None:
    grouped = f"{n:_}"
    assert parse_size(f"{n}{suffix}") == n
    assert parse_size(grouped) == n


@given(
    st.integers(min_value=0, max_value=10**4),
    st.sampled_from([("K", 1000), ("mb", 10**6), ("Gi", 1 << 30), ("tib", 1 << 40), ("PB", 10**15)]),
)
def test_parse_size_units_multiply(n: int, unit: tuple[str, int]) -> None:
    name, factor = unit
    assert parse_size(f"{n} {name}") == n * factor


# --------------------------------------------------------------------------------------------------
# Quota changes and filter operators
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "spec", "expected"),
    [
        (8, "+2", 10),
        (8, "-3", 5),
        (8, "=1", 1),
        (8, "12", 12),
        (8, "-10", 0),  # clamped at zero
        (8, "=-5", 0),
        (8, "+-5", 3),  # Rust's i32 parser takes its own sign
        (8, "--5", 13),
        (8, "++5", 13),
        (I32_MAX, "+1", I32_MAX),
        (0, "2147483647", I32_MAX),
    ],
)
def test_group_quota_changes(current: int, spec: str, expected: int) -> None:
    assert apply_quota_change(current, spec, sizes=False) == expected


@pytest.mark.parametrize(
    "spec", ["", "+", "-", "=", "abc", "+ 2", " 2", "2 ", "1_000", "2147483648", "+1.5", "1GB", "\u0663"]
)
def test_group_quota_errors(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid group quota change"):
        apply_quota_change(8, spec, sizes=False)


@pytest.mark.parametrize(
    ("current", "spec", "expected"),
    [
        (16_000_000_000, "+5GiB", 16_000_000_000 + (5 << 30)),
        (16_000_000_000, "-1GB", 15_000_000_000),
        (16_000_000_000, "=20GB", 20_000_000_000),
        (16_000_000_000, "20GB", 20_000_000_000),
        (10, "-1KB", -990),  # storage quota may go negative
        (I64_MAX - 1, "+10", I64_MAX),
        (I64_MIN + 1, "-10", I64_MIN),
        (0, "=18EB", I64_MAX),  # beyond i64: saturated
        (0, "+1.5 KiB", 1536),
    ],
)
def test_storage_quota_changes(current: int, spec: str, expected: int) -> None:
    assert apply_quota_change(current, spec, sizes=True) == expected


@pytest.mark.parametrize("spec", ["", "+", "=x", "+-5GB", "5 XB", "1e21"])
def test_storage_quota_errors(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid storage quota change"):
        apply_quota_change(0, spec, sizes=True)


@given(st.integers(min_value=0, max_value=I32_MAX), st.integers(min_value=0, max_value=I32_MAX))
def test_group_quota_ops_property(current: int, n: int) -> None:
    assert apply_quota_change(current, f"+{n}", sizes=False) == min(current + n, I32_MAX)
    assert apply_quota_change(current, f"-{n}", sizes=False) == max(current - n, 0)
    assert apply_quota_change(current, f"={n}", sizes=False) == n
    assert apply_quota_change(current, str(n), sizes=False) == n


@given(st.integers(min_value=I64_MIN, max_value=I64_MAX), st.integers(min_value=0, max_value=U64_MAX))
def test_storage_quota_ops_property(current: int, n: int) -> None:
    amount = min(n, I64_MAX)
    assert apply_quota_change(current, f"+{n}", sizes=True) == min(current + amount, I64_MAX)
    assert apply_quota_change(current, f"-{n}B", sizes=True) == max(current - amount, I64_MIN)
    assert apply_quota_change(current, f"={n}", sizes=True) == amount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", ("=", 5)),
        ("=5", ("=", 5)),
        ("!=0", ("!=", 0)),
        (">3", (">", 3)),
        (">=3", (">=", 3)),
        ("<-1", ("<", -1)),
        ("<=+7", ("<=", 7)),
        ("-2147483648", ("=", I32_MIN)),
        (">2147483647", (">", I32_MAX)),
    ],
)
def test_parse_number_filter(text: str, expected: tuple[str, int]) -> None:
    assert parse_number_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Failed to parse number from : cannot parse integer from empty string"),
        (">=", "Failed to parse number from : cannot parse integer from empty string"),
        ("> 3", "Failed to parse number from  3: invalid digit found in string"),
        ("=>3", "Failed to parse number from >3: invalid digit found in string"),
        ("3 ", "Failed to parse number from 3 : invalid digit found in string"),
        ("-", "Failed to parse number from -: invalid digit found in string"),
        ("1.5", "Failed to parse number from 1.5: invalid digit found in string"),
        ("2147483648", "Failed to parse number from 2147483648: number too large to fit in target type"),
        ("<-2147483649", "Failed to parse number from -2147483649: number too small to fit in target type"),
        ("99999999999x", "Failed to parse number from 99999999999x: number too large to fit in target type"),
    ],
)
def test_parse_number_filter_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_number_filter(text)
    assert str(info.value) == message


@given(
    st.sampled_from(["", "=", "!=", ">", ">=", "<", "<="]), st.integers(min_value=I32_MIN, max_value=I32_MAX)
)
def test_parse_number_filter_property(op: str, value: int) -> None:
    assert parse_number_filter(f"{op}{value}") == (op or "=", value)


# --------------------------------------------------------------------------------------------------
# Passwords and UUIDs
# --------------------------------------------------------------------------------------------------


def test_md5_digest_of_admin_password_matches_spec() -> None:
    expected = [100, 241, 142, 247, 44, 19, 247, 203, 127, 198, 251, 93, 189, 131, 226, 114]
    assert md5_digest_list("mitosis_admin") == expected
    assert validate_md5_list(expected) == bytes(expected)


@given(st.text())
def test_md5_round_trip(password: str) -> None:
    digest = md5_digest_list(password)
    assert len(digest) == 16
    assert validate_md5_list(digest) == hashlib.md5(password.encode()).digest()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([1] * 15, "got 15"),
        ([1] * 17, "got 17"),
        ([], "got 0"),
        ([1] * 15 + [256], "got 256 at index 15"),
        ([-1] + [1] * 15, "got -1 at index 0"),
        ([True] + [1] * 15, "got True at index 0"),
        ([1.0] + [1] * 15, "got 1.0 at index 0"),
    ],
)
def test_validate_md5_list_errors(value: list[int], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_md5_list(value)
    assert str(info.value).startswith("md5 password must be 16 numbers in 0..255, ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "67e5504410b1426f9247bb680e5fe0c8",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
    ],
)
def test_parse_uuid_forms(text: str) -> None:
    assert parse_uuid(text) == uuid.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "67e55044-10b1-426f-9247-bb680e5fe0c",
        "67e5504410b1-426f-9247-bb680e5fe0c8",
        "67e55044-10b1-426f-9247-bb680e5fe0c8-",
        "{67e5504410b1426f9247bb680e5fe0c8}",
        "URN:UUID:67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67e55044-10b1-426f-9247-bb680e5fe0cg",
        " 67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67e55044-10b1-426f-9247-bb680e5fe0c8\n",
    ],
)
def test_parse_uuid_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid UUID"):
        parse_uuid(text)


@given(st.uuids())
def test_parse_uuid_round_trip(value: uuid.UUID) -> None:
    assert parse_uuid(str(value)) == value
    assert parse_uuid(value.hex.upper()) == value
    assert parse_uuid(value.urn) == value
