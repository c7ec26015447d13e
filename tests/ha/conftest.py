"""A Sentinel deployment on loopback: a primary, a replica and three sentinels, all our own.

Every process is ``redis-server`` (a sentinel is ``redis-server <conf> --sentinel``) on a free
port, with its files in the test's temporary directory. Sentinels declare the master down
after ``DOWN_AFTER_MS`` without an answer, so a failover takes a few seconds, not thirty.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_SERVER, RedisServer, free_port, wait_until

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class Node(RedisServer):
    """A data node: the primary, or a replica of ``replica_of`` (a port)."""

    def __init__(self, workdir: Path, replica_of: int | None = None) -> None:
        super().__init__(workdir, appendonly=True)
        self.replica_of = replica_of

    def start(self) -> Node:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
                "--logfile", "redis.log", "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _answers(client), timeout=10, message=f"redis-server :{self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def role(self) -> str:
        try:
            return str(self.client().execute_command("ROLE")[0])  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return "down"


class SentinelNode:
    """One sentinel watching the primary, its state file in its own directory."""

    def __init__(self, workdir: Path, master_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "sentinel.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {workdir}", "logfile sentinel.log",
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER} 1", ""]), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelNode:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _answers(client), timeout=10, message=f"sentinel :{self.port}")
        return self

    def master(self) -> tuple[str, int] | None:
        try:
            found = redis.Redis(port=self.port, socket_timeout=2).execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        except redis.RedisError:
            return None
        return (found[0].decode(), int(found[1])) if found else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class SentinelCluster:
    """The whole deployment; ``url`` is what ``REDIS_URL`` says to every process."""

    def __init__(self, workdir: Path) -> None:
        (workdir / "primary").mkdir()
        (workdir / "replica").mkdir()
        self.primary = Node(workdir / "primary").start()
        self.replica = Node(workdir / "replica", replica_of=self.primary.port).start()
        wait_until(lambda: _link_up(self.replica), timeout=20, message="the replica to sync")
        self.sentinels = []
        for i in range(3):
            (workdir / f"sentinel{i}").mkdir()
            self.sentinels.append(SentinelNode(workdir / f"sentinel{i}", self.primary.port).start())
        wait_until(lambda: all(self._knows_everyone(s) for s in self.sentinels), timeout=30,
                   message="the sentinels to find the replica and each other")

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, self.replica]

    def master_port(self) -> int | None:
        found = self.sentinels[0].master()
        return found[1] if found else None

    def master_node(self) -> Node:
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    def wait_for_new_master(self, old_port: int, timeout: float = 30) -> float:
        """Seconds until every sentinel names a master other than ``old_port``, and it is one."""
        started = time.monotonic()

        def moved() -> bool:
            found = [s.master() for s in self.sentinels]
            if not all(f and f[1] != old_port for f in found) or len(set(found)) != 1:
                return False
            new = next(n for n in self.nodes if n.port == found[0][1])  # type: ignore[index]
            return new.role() == "master"

        wait_until(moved, timeout=timeout, interval=0.05, message="Sentinel to fail over")
        return time.monotonic() - started

    @staticmethod
    def _knows_everyone(sentinel: SentinelNode) -> bool:
        try:
            info = redis.Redis(port=sentinel.port, decode_responses=True).execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "MASTER", MASTER)
        except redis.RedisError:
            return False
        fields = dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else info
        return int(fields["num-slaves"]) >= 1 and int(fields["num-other-sentinels"]) >= 2

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _link_up(node: Node) -> bool:
    try:
        info = node.client().info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels of the test's own, stopped afterwards."""
    deployment = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    yield deployment
    deployment.stop()
