"""Normalisation: emails, E.164 phones, Lytics values and the field map to Klaviyo attributes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.jobs import ExportJob
from worker.engine.normalize import (
    INVALID_EMAIL,
    NO_EMAIL,
    PHONE_INVALID,
    MappedProfile,
    coerce,
    map_profile,
    normalize_email,
    normalize_phone,
)

E164 = re.compile(r"\+[1-9][0-9]{7,14}")


class TestNormalizeEmail:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("  Ann@Example.COM ", "ann@example.com"),
            ("ANN.SMITH+promo@Sub.Example.co.uk", "ann.smith+promo@sub.example.co.uk"),
            ("o'neil@example.com", "o'neil@example.com"),
            ("user_1@shop-2.example.io", "user_1@shop-2.example.io"),
            ("ivan@xn--80ak6aa92e.xn--p1ai", "ivan@xn--80ak6aa92e.xn--p1ai"),
            ("\tann@example.com\n", "ann@example.com"),
        ],
    )
    def test_valid_addresses_are_trimmed_and_lower_cased(self, raw: str, expected: str) -> None:
        """A valid address comes back trimmed and entirely lower-case."""
        assert normalize_email(raw) == expected

    @pytest.mark.parametrize(
        "raw",
        [
            None, 42, b"ann@example.com", ["ann@example.com"], "", "   ", "ann", "ann@",
            "@example.com", "ann@@example.com", "ann@b@example.com", "ann smith@example.com",
            "ann@exa mple.com", "ann@example", "ann@-example.com", "ann@example-.com",
            "ann@exa_mple.com", ".ann@example.com", "ann.@example.com", "a..b@example.com",
            "ann@example..com", "ann@.example.com", "ann@10.0.0.1", "ann@[10.0.0.1]",
            '"ann"@example.com', "ännchen@example.com", "ann@bücher.de", "<ann@example.com>",
            "mailto:ann@example.com", "ann@example.com,bob@example.com", "a" * 65 + "@example.com",
            "ann@" + "a" * 64 + ".com", "ann@" + ("a" * 60 + ".") * 5 + "com",
        ],
    )
    def test_broken_values_are_refused(self, raw: object) -> None:
        """Anything that is not one plausible address is None."""
        assert normalize_email(raw) is None

    @given(st.text(max_size=80))
    def test_any_text_gives_none_or_a_clean_address(self, raw: str) -> None:
        """Whatever comes in, the result is None or a lower-case, space-free, stable address."""
        email = normalize_email(raw)
        if email is not None:
            assert email == email.lower() == email.strip()
            assert email.count("@") == 1
            assert not any(ch.isspace() for ch in email)
            assert normalize_email(email) == email

    @given(st.emails(), st.sampled_from(["", " ", "\t"]))
    def test_case_and_padding_never_change_the_key(self, email: str, pad: str) -> None:
        """The same address written in another case or padded normalises to one key."""
        assert normalize_email(f"{pad}{email.upper()}{pad}") == normalize_email(email)


    @given(
        st.one_of(
            st.emails(),
            st.text(alphabet="aZ09.-_+@' \t", max_size=70),
            st.from_regex(r"[a-z0-9.-]{1,70}@[a-z0-9.-]{1,70}", fullmatch=True),
        )
    )
    def test_one_pattern_agrees_with_the_rules_one_by_one(self, raw: str) -> None:
        """The single compiled pattern accepts exactly what the written-out rules accept."""
        assert normalize_email(raw) == _email_by_the_rules(raw)


_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"


def _email_by_the_rules(raw: str) -> str | None:
    """The rules in the module docstring, one at a time: the specification of normalize_email."""
    email = raw.strip().lower()
    if len(email) > 254 or email.count("@") != 1:
        return None
    local, _, domain = email.partition("@")
    if len(local) > 64 or not re.fullmatch(rf"{_ATEXT}(?:\.{_ATEXT})*", local):
        return None
    labels = domain.split(".")
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    if len(labels) < 2 or not all(re.fullmatch(label, part) for part in labels):
        return None
    return email if re.fullmatch(r"[a-z0-9-]*[a-z][a-z0-9-]*", labels[-1]) else None


class TestNormalizePhone:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("+1 (415) 555-2671", "+14155552671"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+49.30.123456", "+4930123456"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("\u00a0+61 2/9876 5432 ", "+61298765432"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ],
    )
    def test_numbers_with_a_country_code_become_e164(self, raw: str, expected: str) -> None:
        """A number written with + or 00 and common punctuation becomes + and digits."""
        assert normalize_phone(raw) == expected

    @pytest.mark.parametrize(
        "raw",
        [
            None, 14155552671, "", "+", "415-555-2671", "(415) 555-2671", "4155552671",
            "+1234567", "+1234567890123456", "+0441234567", "+1 415 555 2671 ext 12",
            "+1-415-CALL-NOW", "++14155552671", "+1 415 555 2671+", "00+14155552671",
            "+١٤١٥٥٥٥٢٦٧١",
        ],
    )
    def test_numbers_without_a_country_code_or_broken_are_refused(self, raw: object) -> None:
        """No country code means None: we never guess one; broken numbers are None too."""
        assert normalize_phone(raw) is None

    @given(st.text(alphabet="+0123456789 -.()/x", max_size=30))
    def test_any_text_gives_none_or_e164(self, raw: str) -> None:
        """The result is always None or a stable E.164 number."""
        phone = normalize_phone(raw)
        if phone is not None:
            assert E164.fullmatch(phone)
            assert normalize_phone(phone) == phone

    @given(st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True), st.sampled_from(["+", "00"]),
           st.sampled_from([" ", "-", ".", ""]))
    def test_punctuation_does_not_change_the_number(self, digits: str, lead: str, sep: str) -> None:
        """Grouping the digits with spaces, dashes or dots gives the same E.164 number."""
        written = lead + sep.join(digits[i : i + 3] for i in range(0, len(digits), 3))
        assert normalize_phone(written) == f"+{digits}"


class TestCoerce:
    def test_lytics_booleans_become_booleans(self) -> None:
        """Lytics' "t" and "f" are True and False."""
        assert (coerce("t"), coerce("f")) == (True, False)

    @pytest.mark.parametrize("value", ["true", "T", "yes", "", 1, 0, 2.5, None, ["t"], {"a": "f"}])
    def test_other_values_are_kept_as_they_are(self, value: Any) -> None:
        """Anything else, numbers, lists and maps included, is returned unchanged."""
        assert coerce(value) == value
        assert type(coerce(value)) is type(value)


JOB = ExportJob(
    id="vip",
    audiences=("vip_buyers",),
    field_map={
        "first_name": "first_name", "zip": "external_id", "phone": "phone_number",
        "city": "location.city", "lat": "location.latitude", "ltv": "properties.ltv",
        "is_vip": "properties.vip", "tags": "properties.tags",
    },
)


class TestMapProfile:
    def test_a_full_profile_maps_to_klaviyo_attributes(self) -> None:
        """Standard fields, location parts and custom properties land where Klaviyo wants them."""
        # given
        profile = {"email": " Ann@Example.com", "first_name": "Ann", "zip": 10017,
                   "phone": "+1 415 555 2671", "city": "Paris", "lat": 48.85, "ltv": 120.5,
                   "is_vip": "t", "tags": ["a", "b"], "unmapped": "x"}
        # when
        mapped = map_profile(JOB, profile)
        # then
        assert mapped == MappedProfile(
            email="ann@example.com",
            attributes={"email": "ann@example.com", "first_name": "Ann", "external_id": "10017",
                        "phone_number": "+14155552671", "location": {"city": "Paris",
                        "latitude": 48.85}, "properties": {"ltv": 120.5, "vip": True,
                        "tags": ["a", "b"]}},
        )
        assert mapped.exported

    def test_absent_fields_are_left_out_and_none_clears(self) -> None:
        """A field Lytics did not send stays untouched in Klaviyo; a None value clears it."""
        # when
        mapped = map_profile(JOB, {"email": "ann@example.com", "city": None, "ltv": None,
                                   "phone": None})
        # then
        assert mapped.attributes == {"email": "ann@example.com", "phone_number": None,
                                     "location": {"city": None}, "properties": {"ltv": None}}
        assert mapped.dropped == ()

    @pytest.mark.parametrize(
        ("email", "reason"),
        [(None, NO_EMAIL), ("", NO_EMAIL), ("  ", NO_EMAIL), ([], NO_EMAIL),
         (["", None], NO_EMAIL), ("not-an-email", INVALID_EMAIL),
         (["nope", "still@nope"], INVALID_EMAIL), (7, INVALID_EMAIL)],
    )
    def test_users_without_a_usable_email_are_omitted(self, email: object, reason: str) -> None:
        """No email means no_email; an unusable one means invalid_email; nothing is exported."""
        # when
        mapped = map_profile(JOB, {"email": email, "first_name": "Ann"})
        # then
        assert (mapped.email, mapped.attributes, mapped.omitted) == (None, {}, reason)
        assert not mapped.exported

    def test_a_profile_without_the_email_field_is_omitted(self) -> None:
        """A profile that lacks the email field altogether is omitted as no_email."""
        assert map_profile(JOB, {"first_name": "Ann"}).omitted == NO_EMAIL

    def test_an_emails_array_gives_its_first_valid_address(self) -> None:
        """With ``email_field = "emails"`` the first valid entry of the Lytics array is used."""
        # given
        job = JOB.model_copy(update={"email_field": "emails"})
        # when
        mapped = map_profile(job, {"emails": ["broken", "Bob@Example.com", "ann@example.com"]})
        # then
        assert mapped.email == "bob@example.com"

    def test_an_invalid_phone_is_dropped_but_the_user_is_exported(self) -> None:
        """A phone without a country code is left out, reported, and the user still goes."""
        # when
        mapped = map_profile(JOB, {"email": "ann@example.com", "phone": "415-555-2671",
                                   "first_name": "Ann"})
        # then
        assert mapped.exported
        assert mapped.dropped == (PHONE_INVALID,)
        assert mapped.attributes == {"email": "ann@example.com", "first_name": "Ann"}

    def test_a_phone_list_gives_its_first_valid_number(self) -> None:
        """A Lytics array of phones maps to its first E.164-convertible entry."""
        profile = {"email": "a@example.com", "phone": ["555", "0033 1 23 45 67 89"]}
        mapped = map_profile(JOB, profile)
        assert mapped.attributes["phone_number"] == "+33123456789"

    def test_values_klaviyo_cannot_store_in_a_standard_field_are_dropped(self) -> None:
        """A list or a boolean in a text field is left out and named ``<field>_invalid``."""
        # when
        mapped = map_profile(JOB, {"email": "a@example.com", "first_name": ["Ann"], "zip": True,
                                   "lat": "48.85"})
        # then
        assert mapped.dropped == ("first_name_invalid", "external_id_invalid")
        assert mapped.attributes == {"email": "a@example.com", "location": {"latitude": "48.85"}}

    def test_standard_fields_keep_lytics_strings_that_look_like_booleans(self) -> None:
        """Only custom properties are coerced: a first name "t" stays the string "t"."""
        mapped = map_profile(JOB, {"email": "a@example.com", "first_name": "t", "is_vip": "f"})
        assert mapped.attributes == {"email": "a@example.com", "first_name": "t",
                                     "properties": {"vip": False}}
