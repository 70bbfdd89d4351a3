"""NHS number modulus-11 check (NHS Data Dictionary), against worked examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeward.errors import InvalidNhsNumber
from homeward.nhs import check_digit, format_nhs_number, is_valid_nhs_number, normalise_nhs_number

# 943 476 591 9 is the NHS Data Dictionary's worked example: weights 10..2 give
# 9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299; 299 mod 11 = 2; 11 - 2 = 9.
VALID = ["9434765919", "943 476 5919", "943-476-5919", "4010232137", "9990000026"]
# Wrong last digit, or a first nine whose check digit would be 10 (never issued).
INVALID = ["9434765918", "9434765910", "4010232138", "1234567890"]
MALFORMED = ["", "943476591", "94347659190", "943476591X", "abcdefghij", "９４３４７６５９１９"]


@pytest.mark.parametrize("number", VALID)
def test_valid(number: str) -> None:
    assert is_valid_nhs_number(number)
    assert normalise_nhs_number(number) == number.replace(" ", "").replace("-", "")


@pytest.mark.parametrize("number", INVALID)
def test_invalid_check_digit(number: str) -> None:
    assert not is_valid_nhs_number(number)
    with pytest.raises(InvalidNhsNumber, match=r"check digit|not a valid"):
        normalise_nhs_number(number)


@pytest.mark.parametrize("number", MALFORMED)
def test_malformed(number: str) -> None:
    with pytest.raises(InvalidNhsNumber, match="ten digits"):
        normalise_nhs_number(number)


def test_check_digit_worked_example_and_remainders() -> None:
    assert check_digit("943476591") == 9
    assert check_digit("123456789") is None  # 11 - (210 mod 11 = 1) = 10: invalid
    assert check_digit("401023213") == 7
    assert check_digit("000000000") == 0  # sum 0 → 11 → 0


def test_display_form() -> None:
    assert format_nhs_number("9434765919") == "943 476 5919"


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_every_nine_digits_have_at_most_one_valid_completion(first_nine: str) -> None:
    completions = [d for d in "0123456789" if is_valid_nhs_number(first_nine + d)]
    expected = check_digit(first_nine)
    assert completions == ([] if expected is None else [str(expected)])
