"""apimachinery's TestQuantityParse table, ported: each case named `TestQuantityParse/<input>`.

Source: staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go as stored in the reference
index (the version with `{"12E", decQuantity(12, 18, DecimalSI)}`: decimal amounts above int64 kept).
decQuantity(v, s) is v * 10**s; maxAllowed is the largest int64. As in Go, every case is also checked
negated and with an explicit "+". Format (DecimalSI/BinarySI/DecimalExponent) is not modelled:
nodeagent keeps the text a quantity was written as, so those assertions have no counterpart.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from nodeagent.api.quantity import MAX_INT64, parse_quantity
from nodeagent.errors import QuantityError

MAX = None  # maxAllowed
KI, MI, GI, TI, PI, EI = (1024**n for n in range(1, 7))

TABLE: list[tuple[str, int | None, int]] = [
    ("0", 0, 0), ("0n", 0, 0), ("0u", 0, 0), ("0m", 0, 0), ("0Ki", 0, 0), ("0k", 0, 0), ("0Mi", 0, 0),
    ("0M", 0, 0), ("0Gi", 0, 0), ("0G", 0, 0), ("0Ti", 0, 0), ("0T", 0, 0),
    ("1", 1, 0),
    ("1Ki", KI, 0), ("8Ki", 8 * KI, 0), ("7Mi", 7 * MI, 0), ("6Gi", 6 * GI, 0), ("5Ti", 5 * TI, 0),
    ("4Pi", 4 * PI, 0), ("3Ei", 3 * EI, 0), ("10Ti", 10 * TI, 0), ("100Ti", 100 * TI, 0),
    ("5n", 5, -9), ("4u", 4, -6), ("3m", 3, -3), ("9", 9, 0), ("8k", 8, 3), ("50k", 5, 4), ("7M", 7, 6),
    ("6G", 6, 9), ("5T", 5, 12), ("40T", 4, 13), ("300T", 3, 14), ("2P", 2, 15), ("1E", 1, 18),
    ("1E-3", 1, -3), ("1e3", 1, 3), ("1E6", 1, 6), ("1e9", 1, 9), ("1E12", 1, 12), ("1e15", 1, 15),
    ("1E18", 1, 18),
    ("1e14", 1, 14), ("1e13", 1, 13), ("100.035k", 100035, 0),
    ("0.001", 1, -3), ("0.0005k", 5, -1), ("0.005", 5, -3), ("0.05", 5, -2), ("0.5", 5, -1),
    ("0.00050k", 5, -1), ("0.00500", 5, -3), ("0.05000", 5, -2), ("0.50000", 5, -1), ("0.5e0", 5, -1),
    ("0.5e-1", 5, -2), ("0.5e-2", 5, -3), ("10.035M", 10035, 3),
    ("1.2e3", 12, 2), ("1.3E+6", 13, 5), ("1.40e9", 14, 8), ("1.53E12", 153, 10), ("1.6e15", 16, 14),
    ("1.7E18", 17, 17),
    ("9.01", 901, -2), ("8.1k", 81, 2), ("7.123456M", 7123456, 0), ("6.987654321G", 6987654321, 0),
    ("5.444T", 5444, 9), ("40.1T", 401, 11), ("300.2T", 3002, 11), ("2.5P", 25, 14), ("1.01E", 101, 16),
    ("3.001n", 4, -9), ("1.1E-9", 2, -9), ("0.0000000001", 1, -9), ("0.0000000005", 1, -9),
    ("0.00000000050", 1, -9), ("0.5e-9", 1, -9), ("0.9n", 1, -9), ("0.00000012345", 124, -9),
    ("0.00000012354", 124, -9), ("9Ei", MAX, 0), ("9223372036854775807Ki", MAX, 0), ("12E", 12, 18),
    ("100.035Ki", 10243584, -2), ("0.5Mi", MI // 2, 0), ("0.05Gi", 536870912, -1),
    ("0.025Ti", 274877906944, -1),
    ("0.000000000001Ki", 2, -9), (".001", 1, -3), (".0001k", 100, -3), ("1.", 1, 0), ("1.G", 1, 9),
]

INVALID = ["1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", " 1", "1 ", ""]


def expected(value: int | None, scale: int) -> Fraction:
    if value is None:
        return Fraction(MAX_INT64)
    return Fraction(value) * Fraction(10) ** scale


@pytest.mark.parametrize(("text", "value", "scale"), TABLE, ids=[f"TestQuantityParse/{t[0]}" for t in TABLE])
def test_quantity_parse(text: str, value: int | None, scale: int) -> None:
    amount = expected(value, scale)
    assert parse_quantity(text).amount == amount
    assert parse_quantity("-" + text).amount == -amount
    assert parse_quantity("+" + text).amount == amount


@pytest.mark.parametrize("text", INVALID, ids=[f"TestQuantityParse/invalid/{t!r}" for t in INVALID])
def test_quantity_parse_invalid(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
