"""The jobs file's consent choices: how a created list takes people, and what an exit does."""

from __future__ import annotations

import pytest

from contract import operations as ops
from contract.spec import validate_request
from core.jobs import ExportJob, JobsFileError, parse_jobs
from tests.harness import jobs_toml
from worker.engine.bootstrap import opt_in_note
from worker.engine.plan import make_plan
from worker.klaviyo.lists import KlaviyoList, create_list_body
from worker.state.codes import FORGET
from worker.state.desired import Desired

VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP"}


def job(**fields: object) -> ExportJob:
    return parse_jobs(jobs_toml([{**VIP, **fields}])).get("vip")


class TestNewListOptIn:
    def test_unset_is_double_and_sent_explicitly(self) -> None:
        """A job that says nothing asks for double opt-in (Klaviyo's own default) and says so
        in the request, so the list does not depend on an account setting (issue #15)."""
        assert (job().new_list_opt_in, job().opt_in_process) == ("double", "double_opt_in")
        assert create_list_body("VIP", job().opt_in_process)["data"]["attributes"][
            "opt_in_process"] == "double_opt_in"

    @pytest.mark.parametrize("choice", ["double", "single"])
    def test_a_choice_is_sent_as_klaviyos_value(self, choice: str) -> None:
        assert job(new_list_opt_in=choice).opt_in_process == f"{choice}_opt_in"

    def test_an_unknown_value_is_one_readable_line(self) -> None:
        with pytest.raises(JobsFileError) as caught:
            job(new_list_opt_in="triple")
        assert str(caught.value) == (
            "job 'vip': new_list_opt_in: Input should be 'double' or 'single', not 'triple'")

    @pytest.mark.parametrize("choice", ["double", "single"])
    def test_the_create_list_body_is_valid_against_the_spec(self, choice: str) -> None:
        """The body the bootstrap sends names the job's opt-in process, as Klaviyo's schema
        allows."""
        body = create_list_body("VIP", job(new_list_opt_in=choice).opt_in_process)
        validate_request(ops.CREATE_LIST, body)
        assert body["data"]["attributes"]["opt_in_process"] == f"{choice}_opt_in"


class TestOptInNote:
    def test_single_asked_and_double_given_is_said_plainly(self) -> None:
        note = opt_in_note(job(new_list_opt_in="single"),
                           KlaviyoList("L1", "VIP", "double_opt_in"), created=True)
        assert "asked for single opt-in, but list L1 is double opt-in" in note
        assert "not enabled on this account" in note and "after confirming" in note

    def test_an_existing_double_list_is_not_blamed_on_klaviyo(self) -> None:
        note = opt_in_note(job(new_list_opt_in="single"),
                           KlaviyoList("L1", "VIP", "double_opt_in"), created=False)
        assert "already existed" in note

    @pytest.mark.parametrize(("choice", "got"), [("single", "single_opt_in"),
                                                 ("double", "double_opt_in"),
                                                 ("double", "single_opt_in")])
    def test_nothing_to_say_when_the_list_is_not_stricter_than_asked(
            self, choice: str, got: str) -> None:
        assert opt_in_note(job(new_list_opt_in=choice), KlaviyoList("L1", "VIP", got),
                           created=True) == ""


def user(email: str, *, member: bool, applied: str | None) -> Desired:
    return Desired(email=email, member=member, fields_ts="", attributes={}, applied=applied)


class TestExitPolicy:
    def test_remove_is_the_default(self) -> None:
        assert (job().on_exit, job().removes_on_exit) == ("remove", True)

    def test_an_unknown_value_is_one_readable_line(self) -> None:
        with pytest.raises(JobsFileError, match=r"^job 'vip': on_exit: Input should be "
                                                r"'remove' or 'keep', not 'forget'$"):
            job(on_exit="forget")

    def test_a_member_who_left_is_removed_by_default(self) -> None:
        left = user("a@example.com", member=False, applied="in|")
        plan = make_plan([left])
        assert (plan.leave, plan.kept) == ([left], [])

    @pytest.mark.parametrize("applied", ["in|", "try|", None])
    def test_an_add_only_job_removes_nobody_and_keeps_what_klaviyo_was_told(
            self, applied: str | None) -> None:
        """With on_exit = "keep" nothing is sent and ``applied`` stays, so the user is still
        counted in ``added`` and never in ``removed``."""
        left = user("a@example.com", member=False, applied=applied)
        plan = make_plan([left], removes_on_exit=job(on_exit="keep").removes_on_exit)
        assert (plan.leave, plan.kept) == ([], [left])
        assert plan.released_as_is() == [("a@example.com", FORGET)]

    def test_a_kept_user_who_re_enters_needs_nothing_sent(self) -> None:
        """Still a member in Klaviyo's eyes: no second subscribe."""
        back = user("a@example.com", member=True, applied="in|")
        plan = make_plan([back], removes_on_exit=False)
        assert (plan.join, plan.refresh, plan.unchanged) == ([], [], [("a@example.com", FORGET)])

    def test_joins_are_the_same_under_either_policy(self) -> None:
        new = user("b@example.com", member=True, applied=None)
        assert make_plan([new], removes_on_exit=False).join == [new]
