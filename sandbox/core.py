"""The sandbox's whole state: accounts, limits, faults, stats, jobs, Lytics segments.

One re-entrant lock guards it all; request handlers run on the server's event
loop and take the lock only for the short, synchronous part of their work, so
tests and admin helpers may read state from other threads safely.
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

from sandbox.account import Account
from sandbox.clock import Clock, iso
from sandbox.consent import suppress
from sandbox.faults import Faults
from sandbox.identity import index_key, short_id
from sandbox.jobs import (
    ImportJob,
    Job,
    SubscribeJob,
    UnsubscribeJob,
    confirm,
    run_import,
    run_subscribe,
    run_unsubscribe,
)
from sandbox.lists import ListRec
from sandbox.lytics import LyticsStore
from sandbox.ratelimit import Limiter
from sandbox.realism import REALISTIC, Realism
from sandbox.stats import Stats


class Sandbox:
    """A local Klaviyo's memory."""

    def __init__(self, *, speed: float = 1.0, realism: Realism = REALISTIC,
                 validate: bool = True, lytics_members: Path | None = None,
                 lytics_token: str | None = None) -> None:
        self.lock = threading.RLock()
        self.realism = realism
        self.rng = random.Random(realism.seed)
        self.clock = Clock(speed)
        self.limiter = Limiter(self.clock, realism, self.rng)
        self.stats = Stats()
        self.faults = Faults()
        self.validate = validate
        self.lytics = LyticsStore(lytics_members, lytics_token)
        self.accounts: dict[str, Account] = {}
        self.list_owner: dict[str, str] = {}
        self.subscribe_jobs: dict[str, SubscribeJob | UnsubscribeJob] = {}
        self.generation = 0

    def account(self, fingerprint: str) -> Account:
        """The account of one key, created on first use."""
        found = self.accounts.get(fingerprint)
        if found is None:
            seed = None if self.realism.seed is None else f"{self.realism.seed}:{fingerprint}"
            found = self.accounts[fingerprint] = Account(fingerprint, random.Random(seed))
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

    def schedule(self, account: Account, job: Job) -> None:
        """Queue → processing after half the delay → complete after the full delay.

        Each job draws its own delay from the account's generator, so jobs of one account
        complete in no strict order, as a loaded real account's do."""
        loop = asyncio.get_running_loop()
        generation = self.generation
        delay = self.realism.job_delay.draw(account.rng)
        loop.call_later(delay / 2, self._start, generation, job)
        loop.call_later(delay, self._finish, generation, account, job)

    def _start(self, generation: int, job: Job) -> None:
        with self.lock:
            if generation == self.generation and job.status == "queued":
                job.status, job.started_at = "processing", iso()

    def _finish(self, generation: int, account: Account, job: Job) -> None:
        with self.lock:
            if generation != self.generation:
                return
            job.started_at = job.started_at or iso()
            now = iso()
            if isinstance(job, ImportJob):
                run_import(account, job, now, nulls_clear=self.realism.bulk_import_nulls_clear,
                           with_payload=self.realism.import_error_payload,
                           conflicts=self.realism.identity_conflicts)
            elif isinstance(job, UnsubscribeJob):
                run_unsubscribe(account, job, now)
            else:
                self._self_confirm_later(generation, account, job.list_id,
                                         run_subscribe(account, job, now))
            job.status, job.completed_at = "complete", iso()

    def _self_confirm_later(self, generation: int, account: Account, list_id: str | None,
                            pending: list[str]) -> None:
        """Some newly pending people confirm by themselves, each after its own delay."""
        share = self.realism.self_confirm_share
        if not share or list_id is None or not pending:
            return
        loop = asyncio.get_running_loop()
        for pid in pending:
            if account.rng.random() < share:
                delay = self.realism.self_confirm_delay.draw(account.rng)
                loop.call_later(delay, self._self_confirm, generation, account, list_id, pid)

    def _self_confirm(self, generation: int, account: Account, list_id: str, pid: str) -> None:
        with self.lock:
            lst = account.lists.get(list_id)
            if generation == self.generation and lst is not None:
                confirm(account, lst, [pid], iso())

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

    def suppress(self, emails: list[str], reason: str = "UNSUBSCRIBE",
                 list_id: str | None = None) -> int:
        """Suppress (or, with UNSUBSCRIBE, unsubscribe) people as their inbox would: from
        one list, or globally. Unknown emails are skipped; returns how many were found.
        ValueError names an unknown reason or list."""
        with self.lock:
            found = self.find_list(list_id) if list_id is not None else None
            if list_id is not None and found is None:
                raise ValueError(f"no list {list_id}")
            accounts = [found[0]] if found is not None else list(self.accounts.values())
            lst = found[1] if found is not None else None
            now, count = iso(), 0
            for account in accounts:
                for email in emails:
                    profile = account.lookup("email", email)
                    if profile is not None:
                        suppress(account, profile, reason, now, lst)
                        count += 1
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
