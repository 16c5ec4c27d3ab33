"""The AGS (Amtlicher Gemeindeschlüssel) is validated wherever a contract carries one."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from wok_contracts import LANDS, MunicipalityRegistered, land_of, validate_ags

LENGTH_MESSAGE = re.escape(
    "AGS must be 8 digits (municipality) or 5 digits (district), e.g. 07312000"
)


@pytest.mark.parametrize(
    "ags",
    [
        "07312000",  # Kaiserslautern, a municipality: 8 digits
        "07312",  # its district key: 5 digits
        "01001000",  # Flensburg, first Land
        "16077052",  # last Land (Thüringen)
        "11000000",  # Berlin
    ],
)
def test_a_valid_ags_is_returned_unchanged(ags: str) -> None:
    assert validate_ags(ags) == ags


def test_the_land_of_kaiserslautern_is_rheinland_pfalz() -> None:
    assert land_of("07312000") == "07"
    assert LANDS[land_of("07312")] == "Rheinland-Pfalz"


@pytest.mark.parametrize("ags", ["00312000", "17312000", "99312", "00000"])
def test_a_land_code_outside_01_to_16_is_refused(ags: str) -> None:
    with pytest.raises(ValueError, match=f"Land code {ags[:2]}, which is not one of 01-16"):
        validate_ags(ags)


@pytest.mark.parametrize(
    "ags",
    [
        "",
        "0731",  # 4 digits
        "073120",  # 6 digits
        "0731200",  # 7 digits
        "073120000",  # 9 digits
        "0731200a",  # a letter
        "O7312000",  # letter O for a zero
        "DE073120",
        " 07312000",
        "07312000\n",  # `$` alone would accept the trailing newline
        "07 312 000",
        "07٣١٢٠٠٠",  # Arabic-Indic digits: `\d` alone would accept them
    ],
)
def test_a_malformed_ags_is_refused_with_the_expected_format(ags: str) -> None:
    with pytest.raises(ValueError, match=LENGTH_MESSAGE):
        validate_ags(ags)


def test_a_contract_refuses_a_bad_ags_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        MunicipalityRegistered(ags="17312000", name="Nowhere", kind="city", land="07")
    (error,) = caught.value.errors()
    assert error["loc"] == ("ags",)
    assert "Land code 17" in error["msg"]


@given(
    land=st.sampled_from(sorted(LANDS)),
    rest=st.text(alphabet="0123456789", min_size=3, max_size=3)
    | st.text(alphabet="0123456789", min_size=6, max_size=6),
)
def test_every_ags_of_a_real_land_and_the_right_length_is_valid(land: str, rest: str) -> None:
    assert validate_ags(land + rest) == land + rest


@given(st.text(max_size=12))
def test_validation_accepts_only_ascii_digits_of_a_real_land(value: str) -> None:
    expected_valid = (
        len(value) in (5, 8) and all(c in "0123456789" for c in value) and value[:2] in LANDS
    )
    try:
        validate_ags(value)
    except ValueError:
        assert not expected_valid
    else:
        assert expected_valid
