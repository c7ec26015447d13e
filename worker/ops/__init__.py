"""Running the fleet: beat's schedule and scheduler, the broker transport, health checks,
heartbeats, logging and Sentry.
"""
