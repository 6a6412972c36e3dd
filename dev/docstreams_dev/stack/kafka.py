"""A single-node Apache Kafka broker (KRaft, broker+controller) run from Maven Central jars."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from docstreams_dev.errors import StackError
from docstreams_dev.stack import process, tools
from docstreams_dev.stack.service import LocalService, atomic_dir

# maven-dependency-plugin pinned so the jar set is reproducible.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Jars whose absence means a broken install (the slf4j binding is not pulled transitively).
REQUIRED_JARS = ("kafka_2.13-", "kafka-server-", "kafka-raft-", "log4j-core-", "log4j-slf4j-impl-")

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.docstreams.local</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# Size-capped rolling logs: a dev broker left running must not fill the disk.
_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="{logs}/server.log" filePattern="{logs}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


def log4j_version(kafka_version: str) -> str:
    """The log4j2 release the given Kafka line was built against."""
    major, minor = (int(p) for p in kafka_version.split(".")[:2])
    return "2.24.3" if (major, minor) < (4, 2) else "2.25.1"


class KafkaBroker(LocalService):
    name = "kafka"

    @property
    def version(self) -> str:
        return self.settings.kafka_version

    @property
    def home(self) -> Path:
        return self.settings.cache_dir / "kafka" / self.version

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def ports(self) -> dict[str, int]:
        return {
            "broker": self.settings.kafka_port,
            "controller": self.settings.kafka_controller_port,
        }

    def installed(self) -> bool:
        return (self.home / ".complete").exists()

    def install(self) -> None:
        mvn = tools.require_maven()
        tools.require_java()
        self.home.mkdir(parents=True, exist_ok=True)
        pom = self.home / "pom.xml"
        pom.write_text(_POM.format(kafka=self.version, log4j=log4j_version(self.version)))
        staging = atomic_dir(self.libs)
        argv = [
            mvn, "-B", "-q", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(
                f"fetching Kafka {self.version} from Maven failed ({' '.join(argv)}):\n"
                + (done.stdout + done.stderr)[-4000:]
            )
        jars = [p.name for p in staging.iterdir()]
        missing = [j for j in REQUIRED_JARS if not any(n.startswith(j) for n in jars)]
        if missing:
            raise StackError(f"Kafka install incomplete, no jar for: {', '.join(missing)}")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        staging.rename(self.libs)
        (self.home / ".complete").write_text(self.version)

    def prepare(self) -> None:
        java = tools.require_java()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(self._server_properties())
        self._log4j_path.write_text(_LOG4J2.format(logs=self.dir / "logs"))
        if (self.data_dir / "meta.properties").exists():
            return  # formatted before: skipping the format JVM saves seconds on warm starts
        argv = [
            java, "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format",
            f"--cluster-id={self._cluster_id()}", "-c", str(self._config_path),
            "--ignore-formatted",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        argv = [
            tools.require_java(),
            "-Xms128m", f"-Xmx{self.settings.kafka_heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            *shlex.split(self.settings.kafka_jvm_options),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j_path}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp", f"{self.libs}/*",
            "kafka.Kafka", str(self._config_path),
        ]  # fmt: skip
        return argv, dict(os.environ)

    def healthy(self) -> bool:
        if not process.port_open(self.settings.kafka_port):
            return False  # avoids librdkafka's connection-refused log spam while starting
        config: dict[str, Any] = {
            "bootstrap.servers": f"127.0.0.1:{self.settings.kafka_port}",
            "socket.connection.setup.timeout.ms": 2000,
            "logger": logging.getLogger("docstreams.stack.kafka-probe"),
        }
        admin = AdminClient(config)
        try:
            return bool(admin.list_topics(timeout=3).brokers)
        except Exception:  # KafkaException while the broker finishes starting
            return False

    # --- files -----------------------------------------------------------------------------
    @property
    def _config_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def _log4j_path(self) -> Path:
        return self.dir / "log4j2.xml"

    def _cluster_id(self) -> str:
        path = self.dir / "cluster.id"
        while not path.exists() or path.read_text().startswith("-"):
            # base64url of 16 random bytes, as Kafka's own ids; never a leading "-", which
            # command-line parsers take for an option (Kafka's Uuid avoids it the same way).
            path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="))
        return path.read_text().strip()

    def _server_properties(self) -> str:
        port, cport = self.settings.kafka_port, self.settings.kafka_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node cannot meet the defaults (RF 3, min ISR 2) of the internal topics.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Topics come only from `docstreams topics create`: a typo must fail, not create.
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # Page and vector batches can be several MB (topic max.message.bytes goes higher).
            "message.max.bytes": str(16 * 2**20),
            "replica.fetch.max.bytes": str(16 * 2**20),
            # Sized for a 2-core developer machine.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(2 * 2**20),
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())
