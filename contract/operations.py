"""Every Klaviyo operation this project calls, with its limits as data.

Burst (per second), steady (per minute) and daily limits come from the spec's
``x-klaviyo-ratelimit``; item caps come from the operations' documentation. The
rate limiter, the client's cap checks, every caller that splits a batch and the sandbox
all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    """One Klaviyo endpoint: how to call it and how often it may be called."""

    name: str  # Klaviyo's operationId
    method: str
    path: str  # with {id}/{job_id} placeholders
    burst: int  # calls per second
    steady: int  # calls per minute
    daily: int | None = None  # calls per day, where Klaviyo sets one
    max_items: int | None = None  # items per call (profiles, ids) or page size
    max_bytes: int | None = None  # request body size

    @property
    def batch_cap(self) -> int:
        """Items one call may carry: every batching caller splits by this, never its own number."""
        if self.max_items is None:
            raise ValueError(f"{self.name} takes no batch")
        return self.max_items


KB = 1024
MB = 1024 * KB

GET_ACCOUNTS = Operation("get_accounts", "GET", "/api/accounts", 1, 15)
GET_LISTS = Operation("get_lists", "GET", "/api/lists", 75, 750, max_items=10)
GET_LIST = Operation("get_list", "GET", "/api/lists/{id}", 75, 750)
CREATE_LIST = Operation("create_list", "POST", "/api/lists", 10, 150, daily=150)
GET_LIST_PROFILES = Operation(
    "get_profiles_for_list", "GET", "/api/lists/{id}/profiles", 75, 750, max_items=100
)
GET_LIST_PROFILE_IDS = Operation(
    "get_profile_ids_for_list",
    "GET",
    "/api/lists/{id}/relationships/profiles",
    75,
    750,
    max_items=100,
)
ADD_PROFILES_TO_LIST = Operation(
    "add_profiles_to_list",
    "POST",
    "/api/lists/{id}/relationships/profiles",
    10,
    150,
    max_items=1000,
)
REMOVE_PROFILES_FROM_LIST = Operation(
    "remove_profiles_from_list",
    "DELETE",
    "/api/lists/{id}/relationships/profiles",
    10,
    150,
    max_items=1000,
)
GET_LIST_FLOW_TRIGGERS = Operation(
    "get_flows_triggered_by_list", "GET", "/api/lists/{id}/flow-triggers", 3, 60
)
GET_PROFILES = Operation("get_profiles", "GET", "/api/profiles", 75, 750, max_items=100)
PROFILE_IMPORT = Operation(
    "create_or_update_profile",
    "POST",
    "/api/profile-import",
    75,
    750,
    max_items=1,
    max_bytes=100 * KB,
)
BULK_IMPORT = Operation(
    "bulk_import_profiles",
    "POST",
    "/api/profile-bulk-import-jobs",
    10,
    150,
    max_items=10_000,
    max_bytes=5 * MB,
)
GET_BULK_IMPORT = Operation(
    "get_bulk_import_profiles_job", "GET", "/api/profile-bulk-import-jobs/{job_id}", 10, 150
)
# the account's import jobs, filterable by status: one call polls up to 100 jobs at once
GET_BULK_IMPORTS = Operation(
    "get_bulk_import_profiles_jobs",
    "GET",
    "/api/profile-bulk-import-jobs",
    10,
    150,
    max_items=100,
)
GET_BULK_IMPORT_PROFILES = Operation(
    "get_profiles_for_bulk_import_profiles_job",
    "GET",
    "/api/profile-bulk-import-jobs/{id}/profiles",
    10,
    150,
    max_items=100,
)
GET_BULK_IMPORT_PROFILE_IDS = Operation(
    "get_profile_ids_for_bulk_import_profiles_job",
    "GET",
    "/api/profile-bulk-import-jobs/{id}/relationships/profiles",
    10,
    150,
    max_items=100,
)
GET_BULK_IMPORT_ERRORS = Operation(
    "get_errors_for_bulk_import_profiles_job",
    "GET",
    "/api/profile-bulk-import-jobs/{id}/import-errors",
    10,
    150,
    max_items=100,
)
BULK_SUBSCRIBE = Operation(
    "bulk_subscribe_profiles",
    "POST",
    "/api/profile-subscription-bulk-create-jobs",
    75,
    750,
    max_items=1000,
)
PROFILE_MAX_BYTES = 100 * KB

ALL: tuple[Operation, ...] = (
    GET_ACCOUNTS,
    GET_LISTS,
    GET_LIST,
    CREATE_LIST,
    GET_LIST_PROFILES,
    GET_LIST_PROFILE_IDS,
    ADD_PROFILES_TO_LIST,
    REMOVE_PROFILES_FROM_LIST,
    GET_LIST_FLOW_TRIGGERS,
    GET_PROFILES,
    PROFILE_IMPORT,
    BULK_IMPORT,
    GET_BULK_IMPORT,
    GET_BULK_IMPORTS,
    GET_BULK_IMPORT_PROFILES,
    GET_BULK_IMPORT_PROFILE_IDS,
    GET_BULK_IMPORT_ERRORS,
    BULK_SUBSCRIBE,
)
BY_NAME: dict[str, Operation] = {op.name: op for op in ALL}
