"""A local Klaviyo (and Lytics segment scan API) that keeps the real contract.

Start one with :class:`sandbox.server.SandboxServer` (tests) or
``klaviyo-export sandbox`` (people). See ``docs/sandbox.md``.
"""
