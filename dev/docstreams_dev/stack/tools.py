"""The programs the local stack needs, each checked with one clear line when absent."""

from __future__ import annotations

import re
import shutil
import subprocess

from docstreams_dev.errors import MissingToolError

MIN_JAVA_MAJOR = 17  # Kafka 4.x brokers need Java 17
MIN_GO = (1, 26)  # Weaviate v1.37+ declares `go 1.26` in its go.mod


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingToolError(
            f"Java {MIN_JAVA_MAJOR}+ is needed to run Kafka and `java` is not on PATH: install it "
            "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)."
        )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', _run([java, "-version"]))
    major = 0
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_x" style
            major = int(match.group(2))
    if major < MIN_JAVA_MAJOR:
        raise MissingToolError(
            f"Java {MIN_JAVA_MAJOR}+ is needed to run Kafka but {java} is Java {major or '?'}: "
            "install a newer JDK/JRE (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)."
        )
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "Maven is needed once to fetch the Kafka jars and `mvn` is not on PATH: install it "
            "(Debian/Ubuntu: apt-get install -y maven)."
        )
    return mvn


def require_go() -> str:
    go = shutil.which("go")
    need = ".".join(map(str, MIN_GO))
    if go is None:
        raise MissingToolError(
            f"Go {need}+ is needed once to build the Weaviate server and `go` is not on PATH: "
            "install it from your distribution or go.dev."
        )
    match = re.search(r"go(\d+)\.(\d+)", _run([go, "env", "GOVERSION"]))
    have = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if have < MIN_GO:
        raise MissingToolError(
            f"Go {need}+ is needed once to build the Weaviate server but {go} is Go "
            f"{have[0]}.{have[1]}: install a newer Go."
        )
    return go
