"""Side-by-side throughput benchmark against the sandbox at real limits: ``python -m bench.run``."""
