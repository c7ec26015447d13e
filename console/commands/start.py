"""``klaviyo-export start JOB [--from-file PATH [--as-of T] [--timestamp-field F]] [--wait]``.

Every input is checked first (the job, the file and its format, ``--as-of``, the Lytics token),
so a mistake changes nothing in Klaviyo. Then the list is resolved (found, created or
checked). When the job has ``backfill = true``, or a file is given, the audience's current
members are streamed to the ``backfill`` queue (from the file, else from Lytics' scan API),
each as an enter at the source's snapshot time; the job goes on in real time afterwards. A
run interrupted while dispatching resumes from its checkpoint, at its first snapshot time,
when ``start`` is run again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from console.cli import UserError
from console.progress import watch
from core import names
from core.jobs import ExportJob
from core.redisconn import NotReplicated, Replicated
from core.runs import RunStore
from core.settings import Settings, load_settings
from producers.backfill.files import FileSource, SourceError
from producers.backfill.producer import Producer, Source
from producers.backfill.progress import Progress, from_hash, summary
from producers.backfill.scan import ScanSource
from producers.backfill.snapshot import SnapshotError, parse_as_of
from worker import runtime
from worker.celery_app import create_app
from worker.engine import export as engine
from worker.engine import lifecycle
from worker.engine.bootstrap import BootstrapBusy
from worker.klaviyo.errors import KlaviyoError, KlaviyoRetriableError, RateLimited
from worker.limits.gate import Throttled
from worker.state.jobstate import JobState, JobStateStore, Status, opt_in_words

BOOTSTRAP_ATTEMPTS = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("start", help="resolve a job's list, then backfill its audiences",
                            description="Bootstrap JOB's Klaviyo list; then, when the job has "
                                        "backfill = true (or --from-file is given), export the "
                                        "audiences' current members.")
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("--from-file", metavar="PATH",
                        help="Lytics profiles as JSON lines or CSV with a header row "
                             "(default: Lytics' segment scan API)")
    parser.add_argument("--as-of", metavar="TIMESTAMP",
                        help="RFC 3339 time the file describes (default: its modification "
                             "time); exits recorded after it win over the file")
    parser.add_argument("--timestamp-field", metavar="FIELD",
                        help="a field holding each row's own snapshot time (RFC 3339 or epoch "
                             "seconds/milliseconds); rows without it use --as-of")
    parser.add_argument("--wait", action="store_true",
                        help="show progress until the backfill finishes, then its summary")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what starting would do (the list, its flows, how many people "
                             "to subscribe, remove or omit, the time the limits imply) with "
                             "reads only: nothing is sent to Klaviyo or written")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    parser.add_argument("--segment-chunks", type=int, default=20, metavar="N",
                        help="chunk tasks per chord (default 20): smaller segments report sooner")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    job = known_job(args.job, settings)
    if (args.as_of is not None or args.timestamp_field) and not args.from_file:
        raise UserError("--as-of and --timestamp-field apply to --from-file; a Lytics scan "
                        "is as of the moment it starts")
    source = _source(args, job, settings) if job.backfill or args.from_file else None
    if args.dry_run:
        return _dry_run(job, source, settings, as_json=args.json)
    jobstate = JobStateStore(runtime.redis_client(), runtime.job_keys(job.id))
    _lifecycle(job, jobstate, backfills=source is not None)
    list_id = bootstrap(job)
    state = jobstate.get()
    print(f"{job.id}: list {list_id} ready ({opt_in_words(state.opt_in_process)})")
    if state.opt_in_note:
        print(f"{job.id}: WARNING: {state.opt_in_note}")
    if source is None:
        jobstate.set_audiences(job.audiences)
        print(f"{job.id}: backfill = false; exporting in real time only")
        return 0
    try:
        client = runtime.redis_client()
        producer = Producer(client, settings.key_prefix, job, source,
                            app=create_app(settings), segment_chunks=max(1, args.segment_chunks),
                            durable=Replicated(client, settings))
        if producer.resumed:
            print(f"{job.id}: resuming backfill {producer.run_id} "
                  f"from chunk {producer.cursor.chunk}")
        print(f"{job.id}: backfill {producer.run_id} as of {_rfc3339(producer.ts_ns)}")
        store = producer.run()
    except SourceError as exc:
        raise UserError(str(exc)) from None
    except NotReplicated as exc:
        raise UserError(f"backfill not confirmed on a Redis replica ({exc}); "
                        "rerun to resume") from None
    jobstate.set_audiences(job.audiences)  # every audience is now backfilled
    print(f"{job.id}: backfill {store.run_id} dispatched {producer.cursor.profiles:,} profiles "
          f"in {producer.cursor.chunk:,} chunks")
    if args.wait:
        final = watch(lambda: read(store), sys.stdout)
        print(summary(final))
    return 0


def _dry_run(job: ExportJob, source: Source | None, settings: Settings, *,
             as_json: bool) -> int:
    from console.commands import dryrun  # noqa: PLC0415 - only a dry run needs it

    try:
        found = dryrun.dry_run(job, source, settings)
    except ValueError as exc:
        raise UserError(f"job {job.id!r}: {exc}") from None
    except (SourceError, KlaviyoError) as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(found, indent=2) if as_json else dryrun.describe(found))
    return 0


def _lifecycle(job: ExportJob, store: JobStateStore, *, backfills: bool) -> None:
    """A stopped job begins again; a paused one is refused; audience changes are said."""
    status = store.status()
    if status is Status.PAUSED:
        raise UserError(f"job {job.id!r} is paused: `klaviyo-export resume {job.id}` first")
    if status is Status.STOPPED:
        lifecycle.restart(store, job)
        print(f"{job.id}: was stopped; starting again from nothing (the list is checked again)")
        return
    changes = lifecycle.follow_audiences(job, store, engine_schedule_flush)
    for audience in changes.removed:
        print(f"{job.id}: audience {audience} was removed from the job: its members leave the "
              "list unless they are in another of its audiences")
    for audience in changes.added:
        how = ("this backfill exports its current members" if backfills else
               "not backfilled (backfill = false; give --from-file to backfill it)")
        print(f"{job.id}: audience {audience} was added to the job: {how}")


def engine_schedule_flush(job_id: str, countdown: float) -> None:
    """Queue a flush of ``job_id`` (by task name, as producers do)."""
    app = create_app(load_settings())
    try:
        app.send_task(names.FLUSH, args=(job_id,), queue=names.REALTIME, ignore_result=True,
                      countdown=countdown or None)
    finally:
        app.close()


def read(store: RunStore) -> Progress:
    return from_hash(store.run_id, store.progress())


def bootstrap(job: ExportJob) -> str:
    """The job's list id, resolved now; UserError when the job cannot run."""
    for _ in range(BOOTSTRAP_ATTEMPTS):
        try:
            list_id = engine.run_bootstrap(job.id)
        except Throttled as exc:
            time.sleep(min(exc.wait, 5.0))
            continue
        except (BootstrapBusy, RateLimited, KlaviyoRetriableError):
            time.sleep(1.0)
            continue
        if list_id:
            return list_id
        state = JobStateStore(runtime.redis_client(), runtime.job_keys(job.id)).get()
        raise UserError(f"job {job.id!r} is {state.status.value}: {state.reason}")
    raise UserError(f"job {job.id!r}: Klaviyo kept refusing the list bootstrap; try again later")


def _rfc3339(ts_ns: int) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ns // 1_000_000_000))
    return f"{stamp}.{ts_ns % 1_000_000_000 // 1_000_000:03d}Z"


def known_job(job_id: str, settings: Settings) -> ExportJob:
    jobs = runtime.jobs()
    try:
        return jobs.get(job_id)
    except KeyError:
        ids = ", ".join(j.id for j in jobs.jobs)
        raise UserError(f"no job {job_id!r} in {settings.export_jobs_file} (jobs: {ids})") from None


def job_with_list(job_id: str) -> tuple[ExportJob, JobState]:
    """A known job whose list exists (audit, explain); UserError names what is missing."""
    job = known_job(job_id, load_settings())
    state = JobStateStore(runtime.redis_client(), runtime.job_keys(job.id)).get()
    if not state.list_id:
        raise UserError(f"job {job.id!r} has no list yet: run `klaviyo-export start {job.id}`")
    return job, state


def _source(args: argparse.Namespace, job: ExportJob, settings: Settings) -> Source:
    """The backfill's source, every input checked; UserError names the first bad one."""
    if args.from_file:
        try:
            as_of = parse_as_of(args.as_of) if args.as_of is not None else None
            return FileSource(Path(args.from_file), job, as_of_ns=as_of,
                              timestamp_field=args.timestamp_field or None)
        except (SourceError, SnapshotError) as exc:
            raise UserError(str(exc)) from None
    if settings.lytics_api_token is None:
        raise UserError("LYTICS_API_TOKEN is not set: set it, or give --from-file")
    token = settings.lytics_api_token.get_secret_value()
    return ScanSource(job, str(settings.lytics_base_url), token)
