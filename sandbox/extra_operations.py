"""Klaviyo operations the sandbox serves that the product does not call.

The product's table (``contract.operations``) lists what the worker calls; a test
that plays a real account also needs what *other* parties do to it, such as bulk
unsubscribe (``bulk_unsubscribe_profiles``: 100 profiles per call, 75/s, 750/m in the
spec's ``x-klaviyo-ratelimit``). Their schemas are in the bundled OpenAPI subset too.
"""

from __future__ import annotations

from contract.operations import ALL, Operation

BULK_UNSUBSCRIBE = Operation(
    "bulk_unsubscribe_profiles", "POST", "/api/profile-subscription-bulk-delete-jobs", 75, 750,
    max_items=100)

SANDBOX_ONLY: tuple[Operation, ...] = (BULK_UNSUBSCRIBE,)
SERVED: tuple[Operation, ...] = (*ALL, *SANDBOX_ONLY)
SERVED_BY_NAME: dict[str, Operation] = {op.name: op for op in SERVED}
