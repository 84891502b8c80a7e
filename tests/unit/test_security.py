"""Security basics: SASL/SSL settings reach every client, secrets stay out of reprs, logs and --help,
and everything we listen on is loopback unless configured otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from typer.testing import CliRunner

from connectors.broker import EmbeddedKafka, Node
from streams.cli import app as cli
from streams.settings import SECRET_FIELDS, Settings, load_settings

SECRET = "s3cr3t-Pa55"
SASL_ENV = {
    "AGENTSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "AGENTSTREAM_SASL_MECHANISM": "SCRAM-SHA-256",
    "AGENTSTREAM_SASL_USERNAME": "agent",
    "AGENTSTREAM_SASL_PASSWORD": SECRET,
    "AGENTSTREAM_SSL_KEY_PASSWORD": SECRET,
}


def sasl_settings(**changes: object) -> Settings:
    return load_settings(env=SASL_ENV, bootstrap_servers="127.0.0.1:9092", **changes)


def test_secrets_are_not_in_reprs_or_the_public_view() -> None:
    s = sasl_settings()
    assert SECRET not in repr(s) and SECRET not in str(s)
    public = s.public_dict()
    assert SECRET not in repr(public)
    assert all(public[name] == "***" for name in SECRET_FIELDS)
    assert public["sasl_username"] == "agent"
    assert SECRET not in repr(s.faust_broker_credentials())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_confluent_clients(mechanism: str) -> None:
    s = sasl_settings(sasl_mechanism=mechanism)
    for conf in (s.confluent_config(), s.producer_config()):
        assert conf["security.protocol"] == "sasl_plaintext"
        assert conf["sasl.mechanism"] == mechanism
        assert (conf["sasl.username"], conf["sasl.password"]) == ("agent", SECRET)


def test_ssl_files_reach_confluent_clients() -> None:
    s = load_settings(env={}, security_protocol="SSL", ssl_cafile="/ca.pem", ssl_certfile="/c.pem",
                      ssl_keyfile="/k.pem", ssl_key_password=SECRET)  # fmt: skip
    conf = s.confluent_config()
    assert conf["security.protocol"] == "ssl" and "sasl.mechanism" not in conf
    assert (conf["ssl.ca.location"], conf["ssl.certificate.location"], conf["ssl.key.location"]) == (
        "/ca.pem", "/c.pem", "/k.pem",
    )  # fmt: skip
    assert conf["ssl.key.password"] == SECRET


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_faust_and_aiokafka(mechanism: str) -> None:
    credentials = sasl_settings(sasl_mechanism=mechanism).faust_broker_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials.mechanism.value == mechanism
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust hands to aiokafka's clients
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("agent", SECRET)


def test_sasl_ssl_carries_a_tls_context_and_plain_ssl_its_own_credentials() -> None:
    over_tls = sasl_settings(security_protocol="SASL_SSL").faust_broker_credentials()
    assert isinstance(over_tls, SASLCredentials) and over_tls.ssl_context is not None
    assert credentials_to_aiokafka_auth(over_tls)["security_protocol"] == "SASL_SSL"
    assert isinstance(
        load_settings(env={}, security_protocol="SSL").faust_broker_credentials(), SSLCredentials
    )
    assert load_settings(env={}).faust_broker_credentials() is None


def test_the_faust_app_gets_the_credentials_and_binds_loopback(tmp_path: Path) -> None:
    from streams.app import create_app

    s = sasl_settings(data_dir=tmp_path)
    app = create_app(s)
    assert isinstance(app.conf.broker_credentials, SASLCredentials)
    assert app.conf.broker_credentials.username == "agent"
    assert app.conf.web_enabled is False and app.conf.web_bind == "127.0.0.1"
    assert load_settings(env={"AGENTSTREAM_WEB_HOST": "0.0.0.0"}).web_host == "0.0.0.0"  # only if configured


@pytest.mark.parametrize(
    "args",
    [["--help"], *([command, "--help"] for command in ("worker", "demo", "generate", "publish", "broker"))],
)
def test_help_shows_no_secret(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, env=SASL_ENV)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


def _listening(props: str) -> list[str]:
    """The host of every address the broker listens on or advertises."""
    hosts = []
    for line in props.splitlines():
        key, _, value = line.partition("=")
        if key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
            hosts += [
                address.rsplit("//", 1)[-1].split("@")[-1].rsplit(":", 1)[0] for address in value.split(",")
            ]
    return hosts


@pytest.mark.parametrize("settings", [load_settings(env={}), sasl_settings()], ids=["plaintext", "sasl"])
def test_the_embedded_broker_listens_on_loopback_only(settings: Settings, tmp_path: Path) -> None:
    cluster = EmbeddedKafka(brokers=3, settings=settings)
    cluster.nodes = [Node(i, 9000 + i, 9100 + i, tmp_path / str(i), None, 9200 + i) for i in (1, 2, 3)]
    for node in cluster.nodes:
        hosts = _listening(cluster._properties(node))
        assert hosts and set(hosts) == {"127.0.0.1"}


def test_the_sasl_broker_requires_sasl_from_clients(tmp_path: Path) -> None:
    cluster = EmbeddedKafka(brokers=1, settings=sasl_settings())
    cluster.nodes = [Node(1, 9001, 9101, tmp_path, None, 9201)]
    props = dict(
        line.partition("=")[::2] for line in cluster._properties(cluster.nodes[0]).splitlines() if line
    )
    assert props["advertised.listeners"].startswith("SASL_PLAINTEXT://127.0.0.1:9001")
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert "SCRAM-SHA-256" in props["sasl.enabled.mechanisms"]
