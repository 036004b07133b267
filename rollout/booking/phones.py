"""Phone numbers: validation, the provider's form, and masking for logs and reports."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

from rollout.util.errors import RolloutError
from rollout.util.masking import mask, mask_in_text

__all__ = ["InvalidPhone", "forms_of", "mask", "mask_in_text", "mask_known", "normalize", "provider_form"]


class InvalidPhone(RolloutError):
    """A phone number that is not a valid mobile number. The message never shows the number."""


_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


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


def forms_of(phone: str | None, region: str = "IN") -> list[str]:
    """Every way ``phone`` may be written back to us: E.164, digits with and without the country
    code, the national form with its trunk prefix, and the spaced international and national forms."""
    if not phone:
        return []
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", phone)
        return [f for f in {phone, digits} if len(re.sub(r"\D", "", f)) >= 5]
    national = str(number.national_number)
    forms = {
        phone,
        national,
        f"0{national}",
        f"{number.country_code}{national}",
        f"+{number.country_code}{national}",
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
    }
    return sorted((f for f in forms if len(re.sub(r"\D", "", f)) >= 5), key=len, reverse=True)


def mask_known(text: str, phone: str | None, region: str = "IN") -> str:
    """Mask ``phone`` in ``text`` in every form it can take (:func:`forms_of`), then every other
    phone-like run (:func:`mask_in_text`)."""
    forms = forms_of(phone, region)
    if forms:
        e164 = next((f for f in forms if f.startswith("+") and " " not in f), phone or "")
        shown = mask(e164)
        for form in forms:
            text = text.replace(form, shown)
    return mask_in_text(text)
