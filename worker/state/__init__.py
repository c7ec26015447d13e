"""Stores in Redis: desired state (``desired`` and its ``lua/`` scripts, the codes in
``codes``), per-job counters, dead letters and job state. Keys come from ``core.keys``.
"""
