"""The embedded Apache Kafka: real broker jars from Maven Central, run as KRaft nodes on loopback.

Why a real broker and not a look-alike: Faust's recovery reads latest offsets and committed
offsets, and its guarantees depend on the broker's exact answers; look-alikes got those wrong.

Every JVM is started with PR_SET_PDEATHSIG, so the kernel kills it if its owner dies, even by
SIGKILL; a normal exit stops it through the context manager (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.process import die_with_parent
from streams.settings import Settings, load_settings

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
LOG4J = Path(__file__).resolve().parent / "kafka" / "log4j2.properties"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


class BrokerError(RuntimeError):
    """The embedded broker could not be set up, started or reached."""


def lib_dir(settings: Settings) -> Path:
    return settings.kafka_home / settings.kafka_version / "lib"


def ensure_kafka_jars(settings: Settings, log: Callable[[str], None] = print) -> Path:
    """Resolve the Kafka jars with Maven into the git-ignored kafka_home (once)."""
    lib = lib_dir(settings)
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    java = shutil.which("java")
    if not mvn or not java:
        raise BrokerError(
            "the embedded Kafka needs Java 17+ and Maven on PATH "
            f"(java: {java or 'missing'}, mvn: {mvn or 'missing'}); or set KAFKA_BOOTSTRAP_SERVERS"
        )
    log(f"fetching Apache Kafka {settings.kafka_version} jars from Maven Central into {lib} ...")
    lib.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={settings.kafka_version}", f"-DoutputDirectory={lib}", "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"maven could not resolve the Kafka jars:\n{proc.stdout}\n{proc.stderr}")
    marker.write_text(settings.kafka_version)
    return lib


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: the sockets stay bound until all are picked, so the kernel
    cannot hand the same port out twice (a broker then fails with two listeners on one port)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _triples(ports: list[int]) -> list[tuple[int, int, int]]:
    return [(ports[i], ports[i + 1], ports[i + 2]) for i in range(0, len(ports), 3)]


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    internal_port: int = 0  # the brokers' own listener when clients use SASL

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EmbeddedKafka:
    """A KRaft cluster of 1..N combined broker+controller nodes on loopback.

    Use as a context manager; `bootstrap` is the address to give clients.
    """

    brokers: int = 1
    settings: Settings = field(default_factory=load_settings)
    workdir: Path | None = None
    startup_timeout_s: float = 90.0
    log: Callable[[str], None] = lambda _msg: None
    nodes: list[Node] = field(default_factory=list)
    _owns_workdir: bool = False

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes if n.alive) or ",".join(n.address for n in self.nodes)

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        lib = ensure_kafka_jars(self.settings, self.log)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="agentstream-kafka-"))
            self._owns_workdir = True
        self.nodes = [
            Node(i + 1, client, controller, self.workdir / f"node-{i + 1}", None, internal)
            for i, (client, controller, internal) in enumerate(_triples(free_ports(3 * self.brokers)))
        ]
        cluster_id = uuid.uuid4().bytes
        cluster_id_b64 = _kafka_uuid(cluster_id)
        try:
            formats = [self._format(lib, node, cluster_id_b64) for node in self.nodes]
            for node, proc in zip(self.nodes, formats, strict=True):
                out, _ = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise BrokerError(
                        f"formatting node {node.node_id} failed:\n{out.decode(errors='replace')}"
                    )
            for node in self.nodes:
                self._launch(lib, node)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.log(f"embedded Kafka {self.settings.kafka_version} ready at {self.bootstrap}")

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop every node: SIGTERM (controlled shutdown), SIGKILL after the grace period."""
        for node in self.nodes:
            if node.alive:
                node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace_s
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=10)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Fault injection: kill one node (SIGKILL by default); `restart` brings it back."""
        node = self.nodes[node_id - 1]
        if node.alive:
            node.process.send_signal(sig)  # type: ignore[union-attr]
            node.process.wait(timeout=30)  # type: ignore[union-attr]

    def restart(self, node_id: int) -> None:
        self._launch(lib_dir(self.settings), self.nodes[node_id - 1])
        self.wait_ready()

    def pids(self) -> list[int]:
        return [n.process.pid for n in self.nodes if n.process is not None]

    # --- internals ------------------------------------------------------------------------------
    def wait_ready(self) -> None:
        """Block until every live node accepts connections and metadata lists all live brokers."""
        from confluent_kafka.admin import AdminClient

        live = [n for n in self.nodes if n.alive]
        deadline = time.monotonic() + self.startup_timeout_s
        for node in live:  # a TCP probe first: keeps librdkafka from logging refused connections
            while not _accepts(node.port):
                if not node.alive:
                    raise BrokerError(f"node {node.node_id} exited early; see {node.log_dir}/server.log")
                if time.monotonic() > deadline:
                    raise BrokerError(f"node {node.node_id} did not open port {node.port} in time")
                time.sleep(0.1)
        admin = AdminClient(
            self.settings.confluent_config(**{"bootstrap.servers": self.bootstrap, "log_level": 0})
        )
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if len(admin.list_topics(timeout=2).brokers) >= len(live):
                    return
            except Exception as exc:
                last_error = exc
            time.sleep(0.2)
        raise BrokerError(
            f"the embedded Kafka did not become ready in {self.startup_timeout_s}s: {last_error}"
        )

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replication = min(3, self.brokers)
        min_isr = 2 if self.brokers >= 3 else 1
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                *self._listeners(node),
                "controller.listener.names=CONTROLLER",
                f"log.dirs={node.log_dir / 'data'}",
                f"num.partitions={self.settings.partitions}",
                f"default.replication.factor={replication}",
                f"offsets.topic.replication.factor={replication}",
                f"transaction.state.log.replication.factor={replication}",
                f"transaction.state.log.min.isr={min_isr}",
                f"min.insync.replicas={min_isr}",
                "offsets.topic.num.partitions=8",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=-1",
                "log.segment.bytes=268435456",
                "num.network.threads=2",
                "num.io.threads=4",
                "",
            ]
        )

    @property
    def sasl(self) -> bool:
        return self.settings.security_protocol.upper() == "SASL_PLAINTEXT"

    def _listeners(self, node: Node) -> list[str]:
        """Loopback only. With SASL_PLAINTEXT settings the clients' listener requires SASL (the
        settings' user, by PLAIN or SCRAM) and the brokers talk over their own loopback listener.

        For tests and local runs: the user's password is written into the node's properties file.
        """
        control = f"CONTROLLER://127.0.0.1:{node.controller_port}"
        if not self.sasl:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},{control}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        user, password = self.settings.sasl_username, self.settings.sasl_password
        sasl, internal = (
            f"SASL_PLAINTEXT://127.0.0.1:{node.port}",
            f"INTERNAL://127.0.0.1:{node.internal_port}",
        )
        prefix = "listener.name.sasl_plaintext"
        return [
            f"listeners={sasl},{internal},{control}",
            f"advertised.listeners={sasl},{internal}",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"{prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required user_{user}="{password}";',
            *(
                f"{prefix}.{m}.sasl.jaas.config={SCRAM_MODULE} required;"
                for m in ("scram-sha-256", "scram-sha-512")
            ),
        ]

    def _format(self, lib: Path, node: Node, cluster_id: str) -> subprocess.Popen[bytes]:
        node.log_dir.mkdir(parents=True, exist_ok=True)
        props = node.log_dir / "server.properties"
        props.write_text(self._properties(node))
        props.chmod(0o600)
        cmd = [*self._java(lib, node, heap_mb=128), "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}",
               "-c", str(props), "--ignore-formatted"]  # fmt: skip
        s = self.settings
        if self.sasl and s.sasl_mechanism.upper().startswith("SCRAM"):  # SCRAM users live in the metadata log
            cmd += [
                "--add-scram",
                f"{s.sasl_mechanism.upper()}=[name={s.sasl_username},password={s.sasl_password}]",
            ]
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )

    def _launch(self, lib: Path, node: Node) -> None:
        cmd = [*self._java(lib, node, heap_mb=self.settings.broker_heap_mb), "kafka.Kafka",
               str(node.log_dir / "server.properties")]  # fmt: skip
        out = (node.log_dir / "stdout.log").open("ab")
        node.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        out.close()

    @staticmethod
    def _java(lib: Path, node: Node, heap_mb: int) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java, f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 256)}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={node.log_dir}", "-cp", f"{lib}/*",
        ]  # fmt: skip


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _kafka_uuid(raw: bytes) -> str:
    """Kafka's cluster ids are url-safe base64 of 16 bytes without padding."""
    import base64

    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@contextlib.contextmanager
def kafka_cluster(settings: Settings, brokers: int = 1, log: Callable[[str], None] = print) -> Iterator[str]:
    """The bootstrap address to use: the configured cluster, or a fresh embedded one for the block."""
    if not settings.embedded:
        yield settings.bootstrap_servers
        return
    with EmbeddedKafka(brokers=brokers, settings=settings, log=log) as cluster:
        yield cluster.bootstrap
