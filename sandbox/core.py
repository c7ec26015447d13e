"""The sandbox's whole state: accounts, limits, faults, stats, jobs, Lytics segments.

One re-entrant lock guards it all; request handlers run on the server's event
loop and take the lock only for the short, synchronous part of their work, so
tests and admin helpers may read state from other threads safely.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from sandbox.account import Account
from sandbox.clock import Clock, iso
from sandbox.faults import Faults
from sandbox.identity import index_key, short_id
from sandbox.jobs import ImportJob, SubscribeJob, confirm, run_import, run_subscribe
from sandbox.lists import ListRec
from sandbox.lytics import LyticsStore
from sandbox.ratelimit import Limiter
from sandbox.stats import Stats


class Sandbox:
    """A local Klaviyo's memory."""

    def __init__(self, *, speed: float = 1.0, job_delay: float = 0.2, validate: bool = True,
                 lytics_members: Path | None = None, lytics_token: str | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = Clock(speed)
        self.limiter = Limiter(self.clock)
        self.stats = Stats()
        self.faults = Faults()
        self.validate = validate
        self.job_delay = job_delay
        self.lytics = LyticsStore(lytics_members, lytics_token)
        self.accounts: dict[str, Account] = {}
        self.list_owner: dict[str, str] = {}
        self.subscribe_jobs: dict[str, SubscribeJob] = {}
        self.generation = 0

    def account(self, fingerprint: str) -> Account:
        """The account of one key, created on first use."""
        found = self.accounts.get(fingerprint)
        if found is None:
            found = self.accounts[fingerprint] = Account(fingerprint)
        return found

    def reset(self) -> None:
        """Forget accounts, quotas, stats, faults and jobs; reload Lytics segments."""
        with self.lock:
            self.generation += 1
            self.accounts.clear()
            self.list_owner.clear()
            self.subscribe_jobs.clear()
            self.limiter.reset()
            self.stats = Stats()
            self.faults = Faults()
            self.lytics.reload()

    def new_list(self, account: Account, name: str, opt_in: str) -> ListRec:
        """Create a list with an id unique across all accounts."""
        list_id = short_id()
        while list_id in self.list_owner:
            list_id = short_id()
        lst = ListRec(list_id, name, opt_in, iso())
        account.lists[list_id] = lst
        self.list_owner[list_id] = account.fingerprint
        return lst

    def schedule(self, account: Account, job: ImportJob | SubscribeJob) -> None:
        """Queue → processing after half the delay → complete after the full delay."""
        loop = asyncio.get_running_loop()
        generation = self.generation
        loop.call_later(self.job_delay / 2, self._start, generation, job)
        loop.call_later(self.job_delay, self._finish, generation, account, job)

    def _start(self, generation: int, job: ImportJob | SubscribeJob) -> None:
        with self.lock:
            if generation == self.generation and job.status == "queued":
                job.status, job.started_at = "processing", iso()

    def _finish(self, generation: int, account: Account, job: ImportJob | SubscribeJob) -> None:
        with self.lock:
            if generation != self.generation:
                return
            job.started_at = job.started_at or iso()
            now = iso()
            if isinstance(job, ImportJob):
                run_import(account, job, now)
            else:
                run_subscribe(account, job, now)
            job.status, job.completed_at = "complete", iso()

    def find_list(self, list_id: str) -> tuple[Account, ListRec] | None:
        """A list by id, whatever account holds it."""
        owner = self.list_owner.get(list_id)
        account = self.accounts.get(owner) if owner else None
        lst = account.lists.get(list_id) if account else None
        return (account, lst) if account is not None and lst is not None else None

    def confirm(self, list_id: str | None = None, emails: list[str] | None = None) -> int:
        """Confirm pending double opt-ins (one list or all; some emails or all)."""
        with self.lock:
            targets = [found] if list_id and (found := self.find_list(list_id)) else []
            if list_id is None:
                targets = [(a, lst) for a in self.accounts.values() for lst in a.lists.values()]
            count = 0
            for account, lst in targets:
                pids = list(lst.pending)
                if emails is not None:
                    wanted = {index_key("email", e) for e in emails}
                    pids = [p for p in pids if _email_key(account, p) in wanted]
                count += confirm(account, lst, pids, iso())
            return count

    def list_emails(self, list_id: str) -> dict[str, Any] | None:
        """Every member's email (and pending ones), no paging; None if no such list."""
        with self.lock:
            found = self.find_list(list_id)
            if found is None:
                return None
            account, lst = found
            emails = [e for pid in lst.members if (e := account.profiles[pid].email)]
            pending = [e for pid in lst.pending if (e := account.profiles[pid].email)]
            return {"list_id": list_id, "count": len(lst.members), "emails": emails,
                    "pending": pending}


def _email_key(account: Account, pid: str) -> str | None:
    email = account.profiles[pid].email
    return index_key("email", email) if email else None
