"""What every process shares: settings, the jobs file, events, Redis keys, names, redaction.

The webhook receiver, the backfill producer, the workers and the console all import this;
it imports neither ``worker``, ``producers`` nor ``console``.
"""
