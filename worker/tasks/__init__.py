"""Celery tasks: thin adapters from messages to the plain functions of ``worker.engine``.

``export``: the record tasks (``audience.*``) and the export tasks (``export.*``);
``backfill``: a backfill's chunk and segment tasks; ``ops``: heartbeats and health.
Task names are defined once, in ``core.names``.
"""
