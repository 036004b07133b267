"""Phone numbers: validation, the provider's form, and masking for logs and reports."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

from rollout.errors import InvalidPhone

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
# 10 to 15 digits, optionally led by + and split by single spaces or dashes, not glued to a word, a
# number or a time: a phone in free text. Dates (8 digits), date-times (followed by ':'), Meta codes
# (6 digits) and ids inside words do not match.
_PHONE_IN_TEXT = re.compile(r"(?<![\w.+:])\+?\d(?:[ \-]?\d){9,14}(?![\w.:])")


def normalize(raw: str, region: str = "IN") -> str:
    """Return ``raw`` as E.164 (``+919876543210``) if it is a valid mobile number.

    Accepts the forms people type: ``9876543210``, ``09876543210``, ``919876543210``,
    ``+91 98765 43210``. Raises :class:`InvalidPhone` (without echoing the number) otherwise.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPhone("phone number is empty")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("phone number cannot be parsed") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("phone number is not a valid number")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InvalidPhone("phone number is not a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def provider_form(e164: str) -> str:
    """The form wpbox wants: country code and national number, digits only (``919876543210``)."""
    return e164.lstrip("+")


def _country_code(digits: str) -> str | None:
    # E.164 country codes are prefix-free and 1-3 digits long: the first known prefix is the code.
    for length in (1, 2, 3):
        if int(digits[:length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:length]
    return None


def mask(value: str | None) -> str:
    """Mask a phone number for logs and reports: ``+91******3210``.

    Keeps the country code and the last four digits. A value that has no known country code keeps
    only its last four digits; one with fewer than five digits is masked whole.
    """
    if not value:
        return ""
    digits = re.sub(r"\D", "", value)
    # without a + and with at most 10 digits it is a national number: no country code to keep
    has_country = value.lstrip().startswith("+") or len(digits) > 10
    country = _country_code(digits) if has_country and len(digits) >= 8 else None
    if country is not None and len(digits) - len(country) > 4:
        return f"+{country}{'*' * (len(digits) - len(country) - 4)}{digits[-4:]}"
    if len(digits) < 5:
        return "*" * len(digits) if digits else "****"
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_in_text(text: str) -> str:
    """Mask every phone-like run of digits inside free text (provider error messages, details)."""

    def _mask(match: re.Match[str]) -> str:
        found = match.group(0)
        return mask(found if found.startswith("+") else re.sub(r"\D", "", found))

    return _PHONE_IN_TEXT.sub(_mask, text)
