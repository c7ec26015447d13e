"""The export engine: plain functions that record events and make Klaviyo match them.

``export`` holds one function per task (record, flush, poll, bootstrap, sweep); ``record``,
``plan``, ``flush``, ``isolate`` and ``imports`` are its steps; ``bootstrap`` resolves a
job's list; ``normalize`` maps Lytics profiles; ``backfill`` and ``backfill_rows`` run a
backfill's chunks. Nothing here knows Celery.
"""
