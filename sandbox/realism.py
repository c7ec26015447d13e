"""How real the sandbox is: a named profile and the knobs it sets.

``realistic`` (the default everywhere) behaves like a real Klaviyo account, as far as
docs/sandbox.md's behaviour table cites it; ``fast`` keeps the sandbox's old instant
behaviour for tests that need speed over realism. Every knob can be overridden on top
of either profile: ``SandboxServer(profile="fast", job_delay=1.0)`` or
``--profile fast --knob job_delay=1.0``.

Delays are distributions (:class:`Delay`): ``"0.2"`` is a constant, ``"lognormal:3,1,120"``
is a log-normal with a 3 s median, sigma 1 and a 120 s cap (a long tail), and
``"uniform:1,5"`` is uniform between 1 s and 5 s. Two distributions have names
(:data:`NAMED_DELAYS`): ``"realistic"`` is the job delay of a real account under load
(the default), ``"short"`` the same shape (a log-normal with sigma 1, out of arrival order,
with a tail) at a median of 0.4 s instead of 3 s, for test suites that run hundreds of jobs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace
from typing import Any

PROFILES = ("realistic", "fast")
OPT_IN_PROCESSES = ("double_opt_in", "single_opt_in")
PHASES = ("random", "epoch")
NAMED_DELAYS = {"realistic": "lognormal:3,1,120", "short": "lognormal:0.4,1,8"}


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, not {value!r}")


@dataclass(frozen=True)
class Delay:
    """A distribution of real seconds."""

    kind: str = "constant"  # "constant", "lognormal" or "uniform"
    a: float = 0.0  # constant value, lognormal median, uniform low
    b: float = 0.0  # lognormal sigma, uniform high
    cap: float = math.inf  # lognormal cap

    @classmethod
    def parse(cls, value: Delay | float | str) -> Delay:
        """A Delay from a number (constant) or ``kind:a,b[,cap]``; ValueError if malformed."""
        if isinstance(value, Delay):
            return value
        if isinstance(value, int | float):
            return cls._checked(cls("constant", float(value)))
        kind, _, args = NAMED_DELAYS.get(str(value), str(value)).partition(":")
        if not args:
            return cls._checked(cls("constant", float(kind)))
        numbers = [float(x) for x in args.split(",")]
        if kind == "lognormal" and len(numbers) in (2, 3):
            return cls._checked(cls("lognormal", numbers[0], numbers[1],
                                    numbers[2] if len(numbers) == 3 else math.inf))
        if kind == "uniform" and len(numbers) == 2:
            return cls._checked(cls("uniform", numbers[0], numbers[1]))
        raise ValueError(f"cannot read the delay {value!r}: use S, lognormal:MEDIAN,SIGMA[,CAP], "
                         f"uniform:LOW,HIGH or one of {sorted(NAMED_DELAYS)}")

    @staticmethod
    def _checked(delay: Delay) -> Delay:
        if delay.a < 0 or delay.b < 0 or (delay.kind == "uniform" and delay.b < delay.a):
            raise ValueError(f"a delay cannot be negative: {delay}")
        return delay

    def draw(self, rng: random.Random) -> float:
        """One delay, in real seconds."""
        if self.kind == "lognormal":
            return min(self.cap, self.a * math.exp(self.b * rng.gauss(0.0, 1.0)))
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a

    @property
    def zero(self) -> bool:
        """True when every draw is 0 (no sleeping at all)."""
        return self.kind == "constant" and self.a == 0

    def describe(self) -> str:
        """The text form :meth:`parse` reads."""
        if self.kind == "lognormal":
            cap = "" if math.isinf(self.cap) else f",{self.cap:g}"
            return f"lognormal:{self.a:g},{self.b:g}{cap}"
        if self.kind == "uniform":
            return f"uniform:{self.a:g},{self.b:g}"
        return f"{self.a:g}"


@dataclass(frozen=True)
class Realism:
    """Every behaviour knob; see docs/sandbox.md for the source of each default."""

    profile: str = "realistic"
    # lists and consent
    default_opt_in: str = "double_opt_in"  # a list created without opt_in_process
    single_opt_in_enabled: bool = True  # account setting: off, a single opt-in request is double
    self_confirm_share: float = 0.0  # share of pending people who confirm by themselves
    self_confirm_delay: Delay = Delay("lognormal", 60.0, 1.0, 3600.0)
    # asynchronous jobs
    job_delay: Delay = Delay("lognormal", 3.0, 1.0, 120.0)
    # rate limits and the network
    window_phase: str = "random"  # "random": per-account phase; "epoch": on the clock
    latency: Delay = Delay("lognormal", 0.05, 0.5, 2.0)  # per call, before the answer
    foreign_share: float = 0.1  # share of each window another integration uses
    # profile writes
    identity_conflicts: bool = True  # 409 when another profile holds a given identifier
    bulk_import_nulls_clear: bool = False  # bulk import: does null clear a field?
    bulk_import_rejects_whole_job: bool = True  # a malformed profile: 400 for the whole job
    import_error_payload: bool = False  # import-errors carry original_payload
    subscribe_rejects_invalid_email: bool = True  # subscribe job: 400 up front
    seed: int | None = None  # reproducible draws (phases, delays, self-confirmations)

    def __post_init__(self) -> None:
        _one_of("profile", self.profile, PROFILES)
        _one_of("default_opt_in", self.default_opt_in, OPT_IN_PROCESSES)
        _one_of("window_phase", self.window_phase, PHASES)
        for name in ("self_confirm_share", "foreign_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.foreign_share >= 1.0:
            raise ValueError("foreign_share must be below 1: the account would have no quota")

    def describe(self) -> dict[str, Any]:
        """Every knob as JSON (``GET /_sandbox/realism``)."""
        return {f.name: (v.describe() if isinstance(v := getattr(self, f.name), Delay) else v)
                for f in fields(self)}


FAST = Realism(profile="fast", default_opt_in="single_opt_in", job_delay=Delay("constant", 0.2),
               window_phase="epoch", latency=Delay("constant", 0.0), foreign_share=0.0,
               identity_conflicts=False, bulk_import_nulls_clear=True,
               bulk_import_rejects_whole_job=False, import_error_payload=True,
               subscribe_rejects_invalid_email=False)
REALISTIC = Realism()
KNOBS = tuple(f.name for f in fields(Realism) if f.name != "profile")
_DELAYS = {"self_confirm_delay", "job_delay", "latency"}


def build(profile: str = "realistic", **overrides: Any) -> Realism:
    """The named profile with ``overrides`` (None values are ignored); ValueError names a
    bad knob or value."""
    _one_of("profile", profile, PROFILES)
    unknown = sorted(set(overrides) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown sandbox knob(s) {unknown}; known: {list(KNOBS)}")
    chosen: dict[str, Any] = {k: (Delay.parse(v) if k in _DELAYS else v)
                              for k, v in overrides.items() if v is not None}
    return replace(REALISTIC if profile == "realistic" else FAST, **chosen)


def parse_knob(text: str) -> tuple[str, Any]:
    """``name=value`` from the command line, the value typed as the knob wants it."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in KNOBS:
        raise ValueError(f"--knob {text!r}: expected NAME=VALUE with NAME one of {list(KNOBS)}")
    default = getattr(REALISTIC, name)
    if name in _DELAYS:
        return name, Delay.parse(raw)
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--knob {name}: expected true or false, not {raw!r}")
        return name, raw.lower() in ("true", "1", "yes")
    if isinstance(default, float):
        return name, float(raw)
    if name == "seed":
        return name, int(raw)
    return name, raw
