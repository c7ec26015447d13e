"""Redis key names, in one place (see docs/architecture.md for the layout)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKeys:
    """Every key that belongs to one export job."""

    prefix: str
    job_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:job:{self.job_id}"

    @property
    def state(self) -> str:
        return f"{self.base}:state"

    @property
    def pending(self) -> str:
        return f"{self.base}:pending"

    @property
    def inflight(self) -> str:
        return f"{self.base}:inflight"

    @property
    def settling(self) -> str:
        return f"{self.base}:settling"

    @property
    def applied(self) -> str:
        return f"{self.base}:applied"

    @property
    def removal_waits(self) -> str:
        return f"{self.base}:removal-waits"

    @property
    def drift(self) -> str:
        return f"{self.base}:drift"

    @property
    def flushers(self) -> str:
        return f"{self.base}:flushers"

    @property
    def flush_timer(self) -> str:
        return f"{self.base}:flush-timer"

    @property
    def bootstrap_lock(self) -> str:
        return f"{self.base}:bootstrap-lock"

    def user(self, email: str) -> str:
        return f"{self.base}:u:{email}"

    def fields(self, email: str) -> str:
        return f"{self.base}:f:{email}"

    def import_job(self, klaviyo_job_id: str) -> str:
        return f"{self.base}:kjob:{klaviyo_job_id}"


def account_ids_key(prefix: str, account: str) -> str:
    """Email → Klaviyo profile id, per account (removals need ids)."""
    return f"{prefix}:acct:{account}:ids"


def jobs_index_key(prefix: str) -> str:
    """Set of job ids that have state in this Redis."""
    return f"{prefix}:jobs"
