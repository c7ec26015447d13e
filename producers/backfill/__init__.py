"""Backfill: stream an audience's members (a file or Lytics' scan API) into chunk tasks."""
