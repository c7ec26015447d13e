"""Subscribe jobs: email marketing consent on a list, optionally as a historical import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses

from contract import operations as ops
from contract.spec import validate_request, validate_response
from tests.unit.klaviyo_fakes import BASE, sent
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import BatchTooLarge
from worker.klaviyo.subscriptions import SubscribeProfile, subscribe_profiles

JOBS = f"{BASE}/api/profile-subscription-bulk-create-jobs"
PAST = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(name="rsps")
def _rsps(rsps: responses.RequestsMock) -> responses.RequestsMock:
    """The shared mock, answering every subscribe job with 202."""
    rsps.post(JOBS, status=202)
    return rsps


def marketing(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The email marketing consent of profile ``index`` in a subscribe body."""
    item = body["data"]["attributes"]["profiles"]["data"][index]
    consent: dict[str, Any] = item["attributes"]["subscriptions"]["email"]["marketing"]
    return consent


class TestSubscribe:
    """The job subscribes each email to marketing and adds it to the list."""

    def test_body_is_spec_valid(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Each profile gets SUBSCRIBED consent and the list is a relationship."""
        validate_response(ops.BULK_SUBSCRIBE, 202, None)

        subscribe_profiles(client, "L1", [SubscribeProfile("ann@example.com"),
                                          SubscribeProfile("bob@example.com", PAST)])

        body = sent(rsps)
        validate_request(ops.BULK_SUBSCRIBE, body)
        assert body["data"]["type"] == "profile-subscription-bulk-create-job"
        assert body["data"]["relationships"] == {"list": {"data": {"type": "list", "id": "L1"}}}
        assert body["data"]["attributes"]["historical_import"] is False
        assert marketing(body, 0) == {"consent": "SUBSCRIBED"}
        assert marketing(body, 1) == {"consent": "SUBSCRIBED"}  # no consented_at unless historical

    def test_historical_import(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """A historical import sends each profile's consented_at and the custom source."""
        subscribe_profiles(client, "L1", [SubscribeProfile("ann@example.com", PAST)],
                           historical_import=True, custom_source="Lytics audience sync")

        body = sent(rsps)
        validate_request(ops.BULK_SUBSCRIBE, body)
        assert body["data"]["attributes"]["historical_import"] is True
        assert body["data"]["attributes"]["custom_source"] == "Lytics audience sync"
        assert marketing(body) == {"consent": "SUBSCRIBED",
                                   "consented_at": "2024-05-01T12:00:00+00:00"}

    @pytest.mark.parametrize(("consented_at", "message"), [
        (None, "timezone-aware consented_at"),
        (datetime(2024, 5, 1, 12, 0), "timezone-aware consented_at"),  # naive
        (datetime.now(UTC) + timedelta(days=1), "in the past"),
    ])
    def test_historical_import_needs_past_aware_consent(
        self, client: KlaviyoClient, rsps: responses.RequestsMock,
        consented_at: datetime | None, message: str,
    ) -> None:
        """Without a usable consented_at a historical import is a ValueError and nothing is sent."""
        profiles = [SubscribeProfile("ok@example.com", PAST),
                    SubscribeProfile("ann@example.com", consented_at)]

        with pytest.raises(ValueError, match=message) as caught:
            subscribe_profiles(client, "L1", profiles, historical_import=True)

        assert "profile 1" in str(caught.value)
        assert "ann@example.com" not in str(caught.value)
        assert len(rsps.calls) == 0

    def test_no_profiles_no_call(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Nothing to subscribe sends nothing."""
        subscribe_profiles(client, "L1", [])

        assert len(rsps.calls) == 0

    def test_over_one_thousand_refused(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """1,001 profiles are refused before sending."""
        profiles = [SubscribeProfile(f"u{i}@x.io") for i in range(1001)]

        with pytest.raises(BatchTooLarge, match="bulk_subscribe_profiles: 1,001 items"):
            subscribe_profiles(client, "L1", profiles)
        assert len(rsps.calls) == 0

    def test_email_not_in_repr(self) -> None:
        """A SubscribeProfile's repr does not show the email."""
        assert "ann@example.com" not in repr(SubscribeProfile("ann@example.com", PAST))
