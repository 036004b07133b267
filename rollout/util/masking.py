"""Phone numbers masked in free text: the one rule every log, report and stored record uses.

Neutral ground: the tool's redactor and the booking service both mask with it.
"""

from __future__ import annotations

import re

import phonenumbers

# A phone in free text: 10 to 15 digits, optionally led by +, split by at most two spaces, dashes or
# brackets at a time. Whatever punctuation surrounds it (`to 9198...`, `recipient:9198...`,
# `tel:+91...`, a final full stop, a list `9198...,9198...`), it matches; what it must not touch is a
# longer number: a digit run glued to a letter or a digit, or one side of a decimal point or a
# decimal comma (a comma with fewer than 10 digits on its other side; see :func:`mask_in_text`).
_PHONE_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9])(?<!\d\.)\+?\d(?:[ \-()]{0,2}\d){9,14}(?![A-Za-z0-9])(?!\.\d)(?!,\d{1,9}(?!\d))"
)
_DIGITS_BEFORE = re.compile(r"\d+$")
# dates and date-times are never phones: 2026-11-24..., 20261124-203903, 20261124203903
_ISO_DATE = re.compile(r"^(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_STAMP = re.compile(
    r"^(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[ \-]?(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?$"
)


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


def _could_be_phone(found: str) -> bool:
    if found.startswith("+"):
        return True
    if _ISO_DATE.match(found) or _STAMP.match(found):
        return False
    digits = re.sub(r"\D", "", found)
    # a leading 1 without + is the North American code, which needs exactly 11 digits; any other
    # length is a counter or a Unix time in seconds or milliseconds, never a dialable number
    return not (digits.startswith("1") and len(digits) != 11)


def mask_in_text(text: str) -> str:
    """Mask every phone-like run of digits inside free text (provider error messages, details).

    Paths, dates, date-times, Unix times, decimals and ids glued to letters are left as they are.
    """

    def _mask(match: re.Match[str]) -> str:
        found = match.group(0)
        before = text[: match.start()]
        if before.endswith(",") and len((_DIGITS_BEFORE.search(before[:-1]) or [""])[0]) in range(1, 10):
            return found  # the decimals of 3,14159265358 or a thousands group: not a list of phones
        if not _could_be_phone(found):
            return found
        return mask(found if found.startswith("+") else re.sub(r"\D", "", found))

    return _PHONE_IN_TEXT.sub(_mask, text)
