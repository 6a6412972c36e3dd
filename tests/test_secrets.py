"""Secrets come from env or secret files and never show: not in settings' repr, not in any app's
log at DEBUG, not in any Kafka record, not in the status API. Transport settings reach every
Kafka client (librdkafka and the tracker's aiokafka) and Weaviate."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import faust
import httpx
import pytest
from pydantic import SecretStr

from docstreams_dev.servers.callback_receiver import Receiver, receiving
from streams.kafka_clients import base_config, read_all
from streams.pipeline import TOPICS
from streams.settings import Settings
from streams.topics import topic_name
from streams.tracker import broker_credentials
from tests.apps_helpers import isolated, running_apps, submit_and_wait
from tests.kafka_helpers import wait_for
from tests.pdfs import SAMPLE

OPENAI_KEY = "sk-never-log-" + uuid.uuid4().hex
SASL_PASSWORD = "sasl-never-log-" + uuid.uuid4().hex
CALLBACK_KEY = "whsec-never-log-" + uuid.uuid4().hex
SECRETS = (OPENAI_KEY, SASL_PASSWORD, CALLBACK_KEY)


def test_secret_settings_are_masked_in_every_rendering() -> None:
    settings = Settings(openai_api_key=OPENAI_KEY, kafka_sasl_password=SASL_PASSWORD,  # type: ignore[arg-type]
                        callback_secrets={"acme": SecretStr(CALLBACK_KEY)})  # fmt: skip
    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        assert not any(secret in rendering for secret in SECRETS)


def test_secrets_are_read_from_a_mounted_secret_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "DOCSTREAMS_OPENAI_API_KEY").write_text(OPENAI_KEY + "\n")
    (tmp_path / "DOCSTREAMS_KAFKA_SASL_PASSWORD").write_text(SASL_PASSWORD)
    monkeypatch.setenv("DOCSTREAMS_SECRETS_DIR", str(tmp_path))
    settings = Settings()
    assert settings.openai_api_key == SecretStr(OPENAI_KEY)
    assert settings.kafka_sasl_password == SecretStr(SASL_PASSWORD)
    monkeypatch.setenv("DOCSTREAMS_OPENAI_API_KEY", "sk-from-env")
    assert Settings().openai_api_key == SecretStr("sk-from-env")  # env wins over the file


def test_sasl_and_tls_settings_reach_librdkafka_and_the_trackers_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp_path / "ca.key"), "-out", str(ca), "-days", "1",
         "-subj", "/CN=docstreams-test-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    extra = {"ssl.endpoint.identification.algorithm": "https"}
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="docstreams", kafka_sasl_password=SASL_PASSWORD,  # type: ignore[arg-type]
                        kafka_ssl_ca_location=ca, kafka_extra_config=extra)  # fmt: skip
    config = base_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512", "docstreams", SASL_PASSWORD)  # fmt: skip
    assert config["ssl.ca.location"] == str(ca)
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "docstreams" and credentials.password == SASL_PASSWORD
    assert credentials.ssl_context is not None  # SASL over TLS, with the CA above

    plain = Settings()
    assert base_config(plain)["security.protocol"] == "PLAINTEXT"
    assert "sasl.password" not in base_config(plain) and broker_credentials(plain) is None


@pytest.fixture(scope="module")
def logged(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Path, Receiver, str]]:
    output = tmp_path_factory.mktemp("logs") / "apps.log"
    settings = isolated(
        stack_settings,
        tmp_path_factory,
        "secret",
        log_level="DEBUG",
        openai_api_key=SecretStr(OPENAI_KEY),  # set, though the local embedder runs
        kafka_sasl_password=SecretStr(SASL_PASSWORD),  # set, though PLAINTEXT is used
        callback_secrets={"acme": SecretStr(CALLBACK_KEY)},
        callback_allowlist=["127.0.0.1/32"],
    )
    receiver = Receiver()
    with receiving(receiver) as hook, running_apps(settings, output):
        progress = submit_and_wait(settings, str(SAMPLE), "handbook", callback_url=hook)
        assert progress.completed is not None, progress.failure
        wait_for(lambda: receiver.called_back("handbook"), 60)
        status = httpx.get(f"{settings.status_api_url}/documents/acme/handbook").text
        yield settings, output, receiver, status


@pytest.mark.stack
def test_no_secret_appears_in_any_apps_debug_log(
    logged: tuple[Settings, Path, Receiver, str],
) -> None:
    _, output, _, _ = logged
    text = output.read_text(errors="replace")
    assert "DEBUG" in text and len(text) > 10_000  # the apps did log, verbosely
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.stack
def test_no_secret_travels_in_any_kafka_record_or_the_status_api(
    logged: tuple[Settings, Path, Receiver, str],
) -> None:
    settings, _, receiver, status = logged
    assert '"phase":"completed"' in status.replace(" ", "")
    assert not any(secret in status for secret in SECRETS)
    for topic in TOPICS:
        for record in read_all(settings, topic_name(settings, topic.key), "read_uncommitted"):
            raw = (record.key() or b"") + (record.value() or b"")
            assert not any(secret.encode() in raw for secret in SECRETS), topic.key
    callback = receiver.for_document("handbook")[0]
    assert not any(secret.encode() in callback.body for secret in SECRETS)
    assert not any(secret in str(callback.headers) for secret in SECRETS)
