"""NHS number validation (modulus 11), as specified by NHS Digital.

Ten digits; digits 1-9 are multiplied by weights 10 down to 2 and summed; the check
digit is ``11 - (sum mod 11)``, where 11 becomes 0 and 10 means the number is invalid.
"""

from __future__ import annotations

from homeward.errors import InvalidNhsNumber

FHIR_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or ``None`` when no valid number can end them."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise InvalidNhsNumber(f"expected nine digits, got {first_nine!r}")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    digit = 11 - (total % 11)
    if digit == 11:
        return 0
    if digit == 10:
        return None
    return digit


def normalise_nhs_number(raw: str) -> str:
    """Return the ten digits of a valid NHS number or raise :class:`InvalidNhsNumber`.

    Spaces and hyphens in the conventional 3-3-4 grouping are accepted and removed.
    """
    digits = raw.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise InvalidNhsNumber(f"an NHS number has ten digits, got {raw!r}")
    expected = check_digit(digits[:9])
    if expected is None:
        raise InvalidNhsNumber(f"{raw!r} is not a valid NHS number (no check digit possible)")
    if expected != int(digits[9]):
        raise InvalidNhsNumber(f"{raw!r} fails the NHS number check digit")
    return digits


def is_valid_nhs_number(raw: str) -> bool:
    try:
        normalise_nhs_number(raw)
    except InvalidNhsNumber:
        return False
    return True


def format_nhs_number(digits: str) -> str:
    """Conventional 3-3-4 display form."""
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"
