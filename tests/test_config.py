"""Settings: defaults, env vars, the YAML file and KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

from pathlib import Path

import pytest

from pioneer_base.config import KafkaSettings
from streams.topics import TopicSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIONEER_CONFIG", "KAFKA_BOOTSTRAP_SERVERS", "PIONEER_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_work_locally_with_zero_config() -> None:
    kafka = KafkaSettings()
    assert (kafka.bootstrap_servers, kafka.external) == ("127.0.0.1:9092", False)
    assert TopicSettings().partitions == 8


def test_kafka_bootstrap_servers_points_every_component_at_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-0.kafka:9092,kafka-1.kafka:9092")
    kafka = KafkaSettings()
    assert kafka.bootstrap_servers == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert kafka.external


def test_yaml_sections_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pioneer.yml"
    config.write_text(
        "kafka:\n  bootstrap_servers: broker:29092\n  client_id: from-yaml\n"
        "topics:\n  raw: site.raw\n  partitions: 12\n"
    )
    monkeypatch.setenv("PIONEER_CONFIG", str(config))
    assert KafkaSettings().bootstrap_servers == "broker:29092"
    assert (TopicSettings().raw, TopicSettings().partitions, TopicSettings().events) == (
        "site.raw",
        12,
        "pioneer.events",
    )
    monkeypatch.setenv("PIONEER_TOPICS_PARTITIONS", "4")
    assert TopicSettings().partitions == 4
    assert TopicSettings(partitions=2).partitions == 2


def test_a_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIONEER_CONFIG", "/nonexistent/pioneer.yml")
    with pytest.raises(FileNotFoundError, match="PIONEER_CONFIG"):
        KafkaSettings()


def test_kafka_security_settings_read_secrets_from_files_and_never_echo_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Kubernetes mounts a Secret: `PIONEER_KAFKA_SASL_PASSWORD_FILE` names the file."""
    password = tmp_path / "password"
    password.write_text("s3cr3t-from-a-file\n")
    monkeypatch.setenv("PIONEER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PIONEER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PIONEER_KAFKA_SASL_USERNAME", "pioneer")
    monkeypatch.setenv("PIONEER_KAFKA_SASL_PASSWORD_FILE", str(password))
    kafka = KafkaSettings()
    assert kafka.client_options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pioneer",
        "sasl_plain_password": "s3cr3t-from-a-file",
    }
    assert "s3cr3t" not in repr(kafka)
    monkeypatch.setenv("PIONEER_KAFKA_SASL_PASSWORD", "direct")  # the variable itself wins over its file
    assert KafkaSettings().client_options()["sasl_plain_password"] == "direct"

    monkeypatch.delenv("PIONEER_KAFKA_SASL_USERNAME")
    with pytest.raises(ValueError, match="needs PIONEER_KAFKA_SASL_USERNAME") as refused:
        KafkaSettings()
    assert "direct" not in str(refused.value)
    monkeypatch.setenv("PIONEER_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("PIONEER_KAFKA_SASL_PASSWORD")
    with pytest.raises(ValueError, match=r"PIONEER_KAFKA_SASL_PASSWORD_FILE=.*cannot read it"):
        KafkaSettings()


def test_mutual_tls_needs_a_certificate_and_its_key(tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("x")
    with pytest.raises(ValueError, match="both ssl_certfile and ssl_keyfile"):
        KafkaSettings(security_protocol="SSL", ssl_certfile=certificate)
    with pytest.raises(ValueError, match="not a readable file"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nowhere.pem")
