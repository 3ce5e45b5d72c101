import re
from decimal import Decimal, localcontext
from fractions import Fraction
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity as oracle

from nodeagent.api.quantity import ERR_FORMAT, ERR_SUFFIX, MAX_INT64, parse_quantity
from nodeagent.errors import QuantityError

Mi = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "value", "milli"),
    [
        ("128974848", 128974848, 128974848000),
        ("129e6", 129000000, 129000000000),
        ("129M", 129000000, 129000000000),
        ("123Mi", 123 * Mi, 123 * Mi * 1000),
        ("0.5", 1, 500),
        ("500m", 1, 500),
        ("1.5Gi", 1536 * Mi, 1536 * Mi * 1000),
        ("12e-3", 1, 12),
        ("1", 1, 1000),
        ("100m", 1, 100),
        ("0.1", 1, 100),
        ("1.1m", 1, 2),  # milli-values round up
        ("1n", 1, 1),
        ("1u", 1, 1),
        ("2k", 2000, 2000000),
        ("1E", 10**18, 0),  # MilliValue overflows int64: Go's AsScaledInt64 gives 0
        ("1E3", 1000, 1000000),
        ("1e+3", 1000, 1000000),
        ("1.G", 10**9, 10**12),
        (".5Ki", 512, 512000),
        ("0", 0, 0),
        ("-1", -1, -1000),
        ("-1.5m", -1, -2),  # away from zero, as Go's RoundUp
        ("+2", 2, 2000),
    ],
    ids=lambda v: str(v),
)
def test_parse(text: str, value: int, milli: int) -> None:
    quantity = parse_quantity(text)
    assert quantity.value() == value
    assert quantity.milli_value() == milli
    assert str(quantity) == text


@pytest.mark.parametrize(
    ("raw", "value", "milli"),
    [(128974848, 128974848, 128974848000), (0.5, 1, 500), (2, 2, 2000)],
    ids=["int", "float", "small-int"],
)
def test_yaml_numbers(raw: int | float, value: int, milli: int) -> None:
    assert parse_quantity(raw).value() == value
    assert parse_quantity(raw).milli_value() == milli


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ERR_FORMAT),
        ("1.1.M", ERR_FORMAT),
        ("1+1.0M", ERR_FORMAT),
        (" 1", ERR_FORMAT),
        ("1 ", ERR_FORMAT),
        ("aoeu", ERR_FORMAT),
        ("12Q", ERR_FORMAT),
        (".", ERR_FORMAT),
        ("0.1mi", ERR_SUFFIX),
        ("0.1am", ERR_FORMAT),
        (".5i", ERR_SUFFIX),
        ("1i", ERR_SUFFIX),
        ("1K", ERR_SUFFIX),
        ("1ki", ERR_SUFFIX),
        ("-3.01e-", ERR_SUFFIX),
        ("1e99999999999", ERR_SUFFIX),
    ],
    ids=lambda v: repr(v),
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(QuantityError, match="^" + re.escape(message)):
        parse_quantity(text)


def test_bool_is_not_a_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)


def test_rounds_up_to_nano_and_caps_binary_amounts_at_int64() -> None:
    assert parse_quantity("0.0000000001").amount == Fraction(1, 10**9)
    assert parse_quantity("1e-1000000").amount == Fraction(1, 10**9)
    assert parse_quantity("1e1000000").value() == 0  # beyond int64: 0, as Go's Value()
    assert parse_quantity("9Ei").amount == MAX_INT64
    assert parse_quantity("9Ei").value() == MAX_INT64
    assert parse_quantity("-16Ei").amount == -MAX_INT64


def test_decimal_amounts_above_int64_are_kept_as_apimachinery_keeps_them() -> None:
    # ParseQuantity caps only BinarySI; "12E" is int64Amount{12, 18} and 1e30 an exact inf.Dec
    assert parse_quantity("12E").amount == 12 * 10**18
    assert parse_quantity("12E") > parse_quantity("10E") > parse_quantity("9Ei")
    assert parse_quantity("-1e30").amount == -(10**30)
    assert parse_quantity("12345678901234567890123").amount == 12345678901234567890123
    # Value() of an amount beyond int64 is 0 (int64Amount{12, 18}.AsScaledInt64(0) overflows)
    assert parse_quantity("12E").value() == 0
    assert parse_quantity("-1e30").value() == 0
    assert parse_quantity("12E").milli_value() == 0
    assert parse_quantity("9E").value() == 9 * 10**18


def test_huge_exponent_is_instant() -> None:
    # 10**2000000000 would never finish; the cap is decided before any power is taken.
    assert parse_quantity("5e2000000000").value() == 0  # beyond int64, as Go


def test_compare() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000m") == parse_quantity("1")
    assert parse_quantity("500m") < parse_quantity("0.6")


# The official client's parse_quantity is looser than Go ("1K" passes there), so the property is
# stated over Kubernetes' own grammar, where both must agree exactly.
_suffixes = st.sampled_from(
    ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
)
_exponents = st.integers(min_value=-12, max_value=12).map(lambda e: f"e{e}")


@st.composite
def quantities(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "+", "-"]))
    whole = draw(st.text("0123456789", min_size=0, max_size=9))
    frac = draw(st.text("0123456789", min_size=0, max_size=6))
    if not whole and not frac:
        whole = "0"
    number = whole + ("." + frac if frac or (draw(st.booleans()) and whole) else "")
    if number.startswith(".") and not frac:
        number = "0"
    suffix = draw(st.one_of(_suffixes, _exponents))
    return sign + number + suffix


def _expected(text: str) -> Fraction:
    with localcontext() as context:
        context.prec = 80
        exact = Fraction(Decimal(oracle(text)))  # type: ignore[no-untyped-call]  # kubernetes' client is untyped
    magnitude = abs(exact)
    if magnitude:
        magnitude = Fraction(ceil(magnitude * 10**9), 10**9)
    if text.endswith("i"):  # only BinarySI is capped
        magnitude = min(magnitude, Fraction(MAX_INT64))
    return -magnitude if exact < 0 else magnitude


@given(quantities())
def test_agrees_with_the_kubernetes_client(text: str) -> None:
    assert parse_quantity(text).amount == _expected(text)
