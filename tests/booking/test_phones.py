import pytest

from rollout.booking.phones import InvalidPhone, mask, mask_in_text, normalize, provider_form


@pytest.mark.parametrize("raw", ["9876543210", "09876543210", "919876543210", "+91 98765 43210", "+91-98765-43210"])
def test_common_indian_forms_normalize_to_e164(raw):
    assert normalize(raw) == "+919876543210"
    assert provider_form(normalize(raw)) == "919876543210"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("5876543210", "not a mobile"),
        ("12345", "not a valid"),
        ("", "empty"),
        ("call me", "cannot be parsed"),
        ("+91 80 2345 6789", "not a mobile"),
    ],
)
def test_invalid_and_non_mobile_numbers_are_refused(raw, why):
    with pytest.raises(InvalidPhone, match=why) as info:
        normalize(raw)
    assert "9876" not in str(info.value)


def test_other_countries_are_accepted_when_mobile():
    assert normalize("+447911123456") == "+447911123456"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+919876543210", "+91******3210"),
        ("919876543210", "+91******3210"),
        ("+447911123456", "+44******3456"),
        ("98765", "*8765"),
        ("9876543210", "******3210"),
        ("12", "**"),
        ("", ""),
    ],
)
def test_mask_keeps_country_code_and_last_four(value, masked):
    assert mask(value) == masked


def test_mask_in_text_leaves_date_times_alone():
    text = "at 2026-01-01 00:00:06.020Z and 2026-01-01T00:00:06Z, call 98765 43210"
    assert mask_in_text(text) == "at 2026-01-01 00:00:06.020Z and 2026-01-01T00:00:06Z, call ******3210"


def test_mask_in_text_masks_phones_but_not_dates_codes_or_ids():
    text = "(#131026) undeliverable to 919876543210 at 2026-11-24T14:23:04 wamid.SANDBOX000000000001 id 455"
    assert mask_in_text(text) == (
        "(#131026) undeliverable to +91******3210 at 2026-11-24T14:23:04 wamid.SANDBOX000000000001 id 455"
    )
