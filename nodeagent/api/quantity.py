"""Kubernetes resource.Quantity: the grammar of apimachinery's ParseQuantity, in exact arithmetic.

    <quantity>     ::= <sign>? <digits> ( "." <digits>? )? <suffix> | <sign>? "." <digits> <suffix>
    <suffix>       ::= Ki | Mi | Gi | Ti | Pi | Ei            (binary SI, powers of 1024)
                     | n | u | m | "" | k | M | G | T | P | E (decimal SI)
                     | (e|E) <sign>? <digits>                 (decimal exponent)

As in Go, a parsed amount is rounded up (away from zero) to a multiple of 1n; a binary one (Ki..Ei)
is capped at the largest int64, a decimal one is kept exactly ("12E" stays 12*10**18, above int64),
as apimachinery's ParseQuantity. value() and milli_value() round up away from zero like Value() and
MilliValue(); a result outside int64 is 0, as Go's AsScaledInt64 gives for every amount it holds as
an int64Amount ("12E", "1e30": any spelling of up to 18 significant digits), so a 12E memory limit
is no limit at all, exactly as the kubelet reads it. (For the rare inf.Dec amounts Go's result is
the low 64 bits of the true one; 0 is used there too.)
Arithmetic is on Fraction, never float.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache, total_ordering

from nodeagent.errors import QuantityError

ERR_FORMAT = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
_NANO = Fraction(1, 10**9)
# Beyond this many significant digits the exact arithmetic gets costly; Go would accept them, but
# no resource amount needs them, so they are refused as a numeric error rather than risked.
_MAX_DIGITS = 1000
# Go keeps any decimal amount exactly (inf.Dec); here amounts beyond 10**1000 are held as 10**1000,
# so that "1e2000000000" costs nothing. No comparison of resource amounts can tell them apart.
_DECIMAL_CEILING = Fraction(10**_MAX_DIGITS)

_SHAPE = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?([eEinumkKMGTP]*)([-+]?\d*)")
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


@total_ordering
class Quantity:
    """An exact, immutable amount as Kubernetes would hold it, with the text it was written as."""

    __slots__ = ("_milli", "_value", "amount", "text")

    def __init__(self, amount: Fraction, text: str) -> None:
        self.amount = amount
        self.text = text
        self._value: int | None = None
        self._milli: int | None = None

    def value(self) -> int:
        """The amount in whole units, rounded up away from zero (Go: Value())."""
        if self._value is None:
            self._value = _round_away(self.amount.numerator, self.amount.denominator)
        return self._value

    def milli_value(self) -> int:
        """The amount in thousandths, rounded up away from zero (Go: MilliValue())."""
        if self._milli is None:
            self._milli = _round_away(self.amount.numerator * 1000, self.amount.denominator)
        return self._milli

    def is_zero(self) -> bool:
        return self.amount == 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.amount == other.amount

    def __lt__(self, other: Quantity) -> bool:
        return self.amount < other.amount

    def __hash__(self) -> int:
        return hash(self.amount)

    def __repr__(self) -> str:
        return f"Quantity({self.text!r})"

    def __str__(self) -> str:
        return self.text


def _round_away(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) rounded away from zero, in integers: no Fraction arithmetic."""
    rounded = -(-numerator // denominator) if numerator >= 0 else numerator // denominator
    return rounded if MIN_INT64 <= rounded <= MAX_INT64 else 0


def parse_quantity(raw: str | int | float) -> Quantity:
    """Parse a quantity as written in a manifest (YAML may give an int or a float)."""
    if isinstance(raw, bool):
        raise QuantityError(ERR_FORMAT)
    text = repr(raw) if isinstance(raw, float) else str(raw)
    return Quantity(_parse_amount(text), text)


@lru_cache(maxsize=4096)
def _parse_amount(text: str) -> Fraction:
    """The exact amount of a quantity string; cached, as manifests repeat the same few amounts."""
    match = _SHAPE.fullmatch(text)
    if not text or match is None:
        raise QuantityError(ERR_FORMAT)
    sign, whole, frac, letters, exponent = match.groups()
    if not whole and not frac:
        raise QuantityError(ERR_FORMAT)
    frac = frac or ""
    base, power = _interpret_suffix(letters + exponent)

    digits = (whole + frac).lstrip("0")
    if not digits:
        return Fraction(0)
    scale = -len(frac)
    stripped = digits.rstrip("0")
    scale += len(digits) - len(stripped)
    digits = stripped
    if len(digits) > _MAX_DIGITS:
        raise QuantityError(ERR_NUMERIC)

    if base == 10:
        scale += power
        binary_factor = 1
    else:
        binary_factor = 2**power
    # Early outs before any big power of ten: the value is at least 10**(len-1+scale) and, with
    # at most 2**60 from a binary suffix, below 10**(len+scale+19).
    ceiling = Fraction(MAX_INT64) if base == 2 else _DECIMAL_CEILING
    if len(digits) - 1 + scale > (19 if base == 2 else _MAX_DIGITS):
        magnitude = ceiling
    elif len(digits) + scale + (19 if base == 2 else 0) <= -9:
        magnitude = _NANO
    else:
        numerator = int(digits) * binary_factor
        if scale >= 0:
            magnitude = min(Fraction(numerator * 10**scale), ceiling)
        else:
            # Round up to a whole number of nanos (exact already when scale >= -9).
            nanos = -(-numerator * 10**9 // 10**-scale)
            magnitude = min(Fraction(nanos, 10**9), ceiling)
    return -magnitude if sign == "-" else magnitude


def _interpret_suffix(suffix: str) -> tuple[int, int]:
    """(base, power) for a suffix: 10**power or 2**power (Go: suffixHandler.interpret)."""
    if suffix in _DECIMAL_SI:
        return 10, _DECIMAL_SI[suffix]
    if suffix in _BINARY_SI:
        return 2, _BINARY_SI[suffix]
    if len(suffix) > 1 and suffix[0] in "eE":
        exponent = suffix[1:]
        if re.fullmatch(r"[-+]?\d+", exponent) and len(exponent.lstrip("+-0")) <= 10:
            power = int(exponent)
            if abs(power) < 2**31:
                return 10, power
    raise QuantityError(ERR_SUFFIX)
