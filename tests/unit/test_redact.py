"""The one email redactor (``core.redact``): what every log, message and stored reason uses."""

from __future__ import annotations

from core.redact import mask_email, redact, show


class TestMaskEmail:
    def test_keeps_the_first_character_and_the_domain(self) -> None:
        """A masked address still says which domain, never who."""
        assert mask_email("ann@example.com") == "a***@example.com"

    def test_something_without_a_domain_is_hidden_whole(self) -> None:
        assert mask_email("not-an-address") == "***"


class TestRedact:
    def test_every_address_in_a_text_is_masked(self) -> None:
        """Klaviyo error details and exception texts can echo several addresses."""
        text = "duplicate ann@example.com and bob.smith+x@mail.example.org, see logs"
        assert redact(text) == "duplicate a***@example.com and b***@mail.example.org, see logs"

    def test_text_without_addresses_is_unchanged(self) -> None:
        assert redact("HTTP 503 from get_profiles") == "HTTP 503 from get_profiles"

    def test_a_cut_never_leaves_part_of_an_address(self) -> None:
        """Masked first, then cut: the cut falls inside the masked form, not the address."""
        text = "x" * 30 + " annabelle@example.com"
        cut = redact(text, 40)
        assert len(cut) == 40 and cut.endswith("...")
        assert "annabelle" not in cut and "nnab" not in cut

    def test_a_short_text_is_not_cut(self) -> None:
        assert redact("vip", 40) == "vip"


class TestShow:
    def test_a_value_is_shown_short_and_masked(self) -> None:
        """What a payload error echoes of a bad value."""
        assert show({"email": "ann@example.com"}) == "{'email': 'a***@example.com'}"
        assert len(show("y" * 100)) == 40
