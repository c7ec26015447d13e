"""The Klaviyo client: one session per key, typed functions per resource, batch caps checked
before sending (the contract itself is in ``contract``).

Import the resource modules directly (``from worker.klaviyo import lists``); this
package re-exports only the client, its response and the error tree.
"""

from worker.klaviyo.client import KlaviyoClient, KlaviyoResponse, client_for, from_settings
from worker.klaviyo.errors import (
    AuthError,
    BatchTooLarge,
    InvalidRequest,
    KlaviyoError,
    KlaviyoFatalError,
    KlaviyoRetriableError,
    NotFound,
    RateLimited,
    TransientError,
)

__all__ = [
    "AuthError",
    "BatchTooLarge",
    "InvalidRequest",
    "KlaviyoClient",
    "KlaviyoError",
    "KlaviyoFatalError",
    "KlaviyoResponse",
    "KlaviyoRetriableError",
    "NotFound",
    "RateLimited",
    "TransientError",
    "client_for",
    "from_settings",
]
