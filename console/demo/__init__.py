"""``make run``: the demo that drives the whole stack on embedded defaults.

- ``audience``: the shipped example files and the list they must produce;
- ``processes``: child processes in their own groups, bounded waits;
- ``backends``: Redis (``REDIS_URL`` or a private redis-server) and Klaviyo (or the sandbox);
- ``summary``: what the demo prints at the end;
- ``run``: the run itself (``python -m console.demo``).
"""
