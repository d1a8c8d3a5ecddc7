"""Tests for relayd.config: parse_config, load_config and the class retry merge."""

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest

from relayd.config import Config, ConfigError, load_config, parse_config
from relayd.config import model
from relayd.config.units import HostPort

REPOSITORY_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "relayd.toml"
# "whsec_" and the base64 of 32 bytes, the Standard Webhooks secret form.
SECRET = "whsec_" + "A" * 43 + "="

SECTION_DEFAULTS = {
    "server": model.ServerConfig(),
    "smtp": model.SmtpConfig(),
    "http": model.HttpConfig(),
    "dns": model.DnsConfig(),
    "delivery": model.DeliveryConfig(),
    "retry": model.RetryPolicy(),
    "policy": model.PolicyConfig(),
    "suppression": model.SuppressionConfig(),
    "idempotency": model.IdempotencyConfig(),
}


@pytest.mark.parametrize(("attribute", "expected"), SECTION_DEFAULTS.items(), ids=SECTION_DEFAULTS.keys())
def test_empty_document_section_defaults(attribute, expected):
    config = parse_config({})

    assert getattr(config, attribute) == expected


def test_empty_document_collections_empty():
    config = parse_config({})

    assert dict(config.routes) == {}
    assert config.dkim_keys == ()
    assert config.webhooks == ()
    assert config.path is None


@pytest.mark.parametrize("name", model.MESSAGE_CLASSES)
def test_empty_document_class_defaults(name):
    config = parse_config({})
    expected_retry = dataclasses.replace(model.RetryPolicy(), **model.CLASS_RETRY_DEFAULTS[name])

    assert config.classes[name].deadline == model.CLASS_DEADLINES[name]
    assert config.classes[name].retry == expected_retry
    assert config.retry_for(name) == expected_retry


def test_retry_for_unknown_class():
    config = parse_config({"retry": {"first": "7s"}})

    assert config.retry_for("bulk").first == 7.0


# (document, key path named in the message)
UNKNOWN_KEYS = {
    "top level": ({"smpt": {}}, "smpt"),
    "server": ({"server": {"hostnme": "a.example"}}, "server.hostnme"),
    "smtp": ({"smtp": {"lisen": ["127.0.0.1:25"]}}, "smtp.lisen"),
    "http": ({"http": {"port": 80}}, "http.port"),
    "dns": ({"dns": {"servers": []}}, "dns.servers"),
    "delivery": ({"delivery": {"starttls": "off"}}, "delivery.starttls"),
    "retry": ({"retry": {"frist": "1s"}}, "retry.frist"),
    "classes": ({"classes": {"bulk": {}}}, "classes.bulk"),
    "class": ({"classes": {"auth": {"deadlin": "1s"}}}, "classes.auth.deadlin"),
    "class retry": ({"classes": {"auth": {"retry": {"frist": "1s"}}}}, "classes.auth.retry.frist"),
    "dkim": ({"dkim": {"key": []}}, "dkim.key"),
    "dkim key": (
        {"dkim": {"keys": [{"domain": "example.com", "selector": "s1", "key_file": "k.pem", "colour": "red"}]}},
        "dkim.keys[0].colour",
    ),
    "second dkim key": (
        {
            "dkim": {
                "keys": [
                    {"domain": "example.com", "selector": "s1", "key_file": "k.pem"},
                    {"domain": "example.com", "selector": "s2", "key_file": "k.pem", "size": 2048},
                ]
            }
        },
        "dkim.keys[1].size",
    ),
    "policy": ({"policy": {"align": "off"}}, "policy.align"),
    "webhook": (
        {"webhooks": [{"url": "https://hooks.example.com/", "secret": SECRET, "colour": "red"}]},
        "webhooks[0].colour",
    ),
    "webhook retry": (
        {"webhooks": [{"url": "https://hooks.example.com/", "secret": SECRET, "retry": {"frist": "1s"}}]},
        "webhooks[0].retry.frist",
    ),
    "suppression": ({"suppression": {"mode": "drop"}}, "suppression.mode"),
    "idempotency": ({"idempotency": {"windo": "1h"}}, "idempotency.windo"),
}


@pytest.mark.parametrize(("document", "key_path"), UNKNOWN_KEYS.values(), ids=UNKNOWN_KEYS.keys())
def test_unknown_key_names_path(document, key_path):
    with pytest.raises(ConfigError) as raised:
        parse_config(document)

    message = str(raised.value)
    assert re.match(re.escape(key_path) + "( = |:)", message)
    assert "unknown key" in message


# (document, key path, bad value as shown in the message)
BAD_VALUES = {
    "string for int": ({"smtp": {"max_recipients": "100"}}, "smtp.max_recipients", '"100"'),
    "bool for int": ({"smtp": {"max_recipients": True}}, "smtp.max_recipients", "true"),
    "float for int": ({"delivery": {"max_concurrency": 2.5}}, "delivery.max_concurrency", "2.5"),
    "int for duration": ({"delivery": {"connect_timeout": 30}}, "delivery.connect_timeout", "30"),
    "int for size": ({"smtp": {"max_message_size": 1000}}, "smtp.max_message_size", "1000"),
    "int for string": ({"server": {"hostname": 5}}, "server.hostname", "5"),
    "bool for choice": ({"delivery": {"tls": True}}, "delivery.tls", "true"),
    "tls yes": ({"delivery": {"tls": "yes"}}, "delivery.tls", '"yes"'),
    "alignment yes": ({"policy": {"alignment": "yes"}}, "policy.alignment", '"yes"'),
    "size unit": ({"smtp": {"max_message_size": "25XB"}}, "smtp.max_message_size", '"25XB"'),
    "size zero": ({"smtp": {"max_message_size": "0MB"}}, "smtp.max_message_size", '"0MB"'),
    "duration zero": ({"retry": {"first": "0s"}}, "retry.first", '"0s"'),
    "duration negative": ({"retry": {"give_up": "-5m"}}, "retry.give_up", '"-5m"'),
    "duration no unit": ({"smtp": {"idle_timeout": "300"}}, "smtp.idle_timeout", '"300"'),
    "class deadline": ({"classes": {"auth": {"deadline": "soon"}}}, "classes.auth.deadline", '"soon"'),
    "class retry value": (
        {"classes": {"shipping": {"retry": {"max_interval": "0m"}}}},
        "classes.shipping.retry.max_interval",
        '"0m"',
    ),
    "multiplier negative": ({"retry": {"multiplier": -1}}, "retry.multiplier", "-1"),
    "multiplier below one": ({"retry": {"multiplier": 0.5}}, "retry.multiplier", "0.5"),
    "max recipients zero": ({"smtp": {"max_recipients": 0}}, "smtp.max_recipients", "0"),
    "port 70000": ({"delivery": {"port": 70000}}, "delivery.port", "70000"),
    "port zero": ({"delivery": {"port": 0}}, "delivery.port", "0"),
    "bad network": ({"smtp": {"allowed_networks": ["10.0.0.0/33"]}}, "smtp.allowed_networks", "10.0.0.0/33"),
    "network not list": ({"smtp": {"allowed_networks": "127.0.0.0/8"}}, "smtp.allowed_networks", "127.0.0.0/8"),
    "nameserver name": ({"dns": {"nameservers": ["dns.example.com"]}}, "dns.nameservers", "dns.example.com"),
    "nameserver port": ({"dns": {"nameservers": ["127.0.0.1:65536"]}}, "dns.nameservers", "127.0.0.1:65536"),
    "listen no port": ({"smtp": {"listen": ["127.0.0.1"]}}, "smtp.listen", "127.0.0.1"),
    "listen empty": ({"smtp": {"listen": []}}, "smtp.listen", "[]"),
    "listen bad ipv6": ({"smtp": {"listen": ["[::g]:25"]}}, "smtp.listen", "[::g]:25"),
    "http listen": ({"http": {"listen": "localhost"}}, "http.listen", "localhost"),
    "hostname underscore": ({"server": {"hostname": "relay_1.example"}}, "server.hostname", "relay_1.example"),
    "route domain": ({"routes": {"bad..example": "127.0.0.1:25"}}, 'routes."bad..example"', "bad..example"),
    "route address": ({"routes": {"example.com": "mx.example.com:0"}}, 'routes."example.com"', "mx.example.com:0"),
    "route not string": ({"routes": {"example.com": 25}}, 'routes."example.com"', "25"),
    "dkim domain": (
        {"dkim": {"keys": [{"domain": "bad..example", "selector": "s", "key_file": "k"}]}},
        "dkim.keys[0].domain",
        "bad..example",
    ),
    "dkim algorithm": (
        {"dkim": {"keys": [{"domain": "example.com", "selector": "s", "key_file": "k", "algorithm": "md5"}]}},
        "dkim.keys[0].algorithm",
        "md5",
    ),
    "webhook url": ({"webhooks": [{"url": "ftp://x.example/", "secret": "s"}]}, "webhooks[0].url", "ftp://x.example/"),
    "webhook event": (
        {"webhooks": [{"url": "https://x.example/", "secret": SECRET, "events": ["opened"]}]},
        "webhooks[0].events",
        "opened",
    ),
    "webhook timeout": (
        {"webhooks": [{"url": "https://x.example/", "secret": SECRET, "timeout": "0s"}]},
        "webhooks[0].timeout",
        '"0s"',
    ),
    "webhook concurrency": (
        {"webhooks": [{"url": "https://x.example/", "secret": SECRET, "max_concurrency": 0}]},
        "webhooks[0].max_concurrency",
        "0",
    ),
    "webhook retry": (
        {"webhooks": [{"url": "https://x.example/", "secret": SECRET, "retry": {"give_up": "never"}}]},
        "webhooks[0].retry.give_up",
        '"never"',
    ),
    "webhook url twice": (
        {"webhooks": [{"url": "https://x.example/", "secret": SECRET}, {"url": "https://x.example/", "secret": SECRET}]},
        "webhooks[1].url",
        "https://x.example/",
    ),
    "suppression code": ({"suppression": {"codes": ["5.1.1", "4.2.2"]}}, "suppression.codes", 'not "4.2.2"'),
    "suppression code form": ({"suppression": {"codes": ["550"]}}, "suppression.codes", "550"),
    "suppression action": ({"suppression": {"action": "bounce"}}, "suppression.action", '"bounce"'),
    "suppression ttl": ({"suppression": {"ttl": "forever"}}, "suppression.ttl", '"forever"'),
    "idempotency window": ({"idempotency": {"window": "0s"}}, "idempotency.window", '"0s"'),
    "idempotency flag": ({"idempotency": {"by_message_id": "yes"}}, "idempotency.by_message_id", '"yes"'),
    "section not table": ({"server": "relay"}, "server", "relay"),
    "shutdown grace": ({"server": {"shutdown_grace": "0s"}}, "server.shutdown_grace", '"0s"'),
    "metrics domain": ({"http": {"metrics_domains": ["not a domain"]}}, "http.metrics_domains", "not a domain"),
    "metrics domains not list": ({"http": {"metrics_domains": "gmail.com"}}, "http.metrics_domains", "gmail.com"),
    "too many metrics domains": (
        {"http": {"metrics_domains": [f"d{n}.example" for n in range(51)]}},
        "http.metrics_domains",
        "d50.example",
    ),
}


@pytest.mark.parametrize(("document", "key_path", "shown"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_value_message(document, key_path, shown):
    with pytest.raises(ConfigError) as raised:
        parse_config(document)

    message = str(raised.value)
    assert message.startswith(key_path)
    assert shown in message
    assert "expected" in message


MISSING_KEYS = {
    "dkim domain": ({"dkim": {"keys": [{"selector": "s", "key_file": "k"}]}}, "dkim.keys[0].domain"),
    "dkim selector": ({"dkim": {"keys": [{"domain": "example.com", "key_file": "k"}]}}, "dkim.keys[0].selector"),
    "dkim key file": ({"dkim": {"keys": [{"domain": "example.com", "selector": "s"}]}}, "dkim.keys[0].key_file"),
    "webhook url": ({"webhooks": [{"secret": "s"}]}, "webhooks[0].url"),
    "webhook secret": ({"webhooks": [{"url": "https://x.example/"}]}, "webhooks[0].secret"),
}


@pytest.mark.parametrize(("document", "key_path"), MISSING_KEYS.values(), ids=MISSING_KEYS.keys())
def test_missing_required_key(document, key_path):
    with pytest.raises(ConfigError) as raised:
        parse_config(document)

    message = str(raised.value)
    assert message.startswith(key_path + ":")
    assert "missing" in message


def test_values_parsed_from_strings():
    config = parse_config(
        {
            "server": {"hostname": "relay.example.net", "spool_dir": "/srv/spool"},
            "smtp": {
                "listen": ["[::1]:2525", "127.0.0.1:2526"],
                "allowed_networks": ["10.1.0.0/16"],
                "max_message_size": "10MiB",
                "max_recipients": 500,
                "idle_timeout": "2m",
            },
            "http": {"listen": "127.0.0.1:9000"},
            "dns": {"nameservers": ["127.0.0.1:5353", "::1"], "timeout": "1500ms"},
            "delivery": {"port": 2525, "tls": "required", "max_concurrency": 7},
        }
    )

    assert config.server.hostname == "relay.example.net"
    assert config.server.spool_dir == Path("/srv/spool")
    assert config.smtp.listen == (HostPort("::1", 2525), HostPort("127.0.0.1", 2526))
    assert config.smtp.allowed_networks == (ipaddress.ip_network("10.1.0.0/16"),)
    assert config.smtp.max_message_size == 10 * 1024 * 1024
    assert config.smtp.max_recipients == 500
    assert config.smtp.idle_timeout == 120.0
    assert config.http.listen == HostPort("127.0.0.1", 9000)
    assert config.dns.nameservers == (HostPort("127.0.0.1", 5353), HostPort("::1", 53))
    assert config.dns.timeout == 1.5
    assert config.delivery.port == 2525
    assert config.delivery.tls == "required"
    assert config.delivery.max_concurrency == 7


def test_routes_keys_normalised():
    config = parse_config(
        {"routes": {"*": "smarthost.example:587", "Example.COM": "10.0.0.1", "bücher.de": "[::1]:2525"}}
    )

    assert config.routes["*"] == model.Route("smarthost.example", 587)
    assert config.routes["example.com"] == model.Route("10.0.0.1", None)
    assert config.routes["xn--bcher-kva.de"] == model.Route("::1", 2525)
    assert set(config.routes) == {"*", "example.com", "xn--bcher-kva.de"}


def test_dkim_and_webhook_entries():
    config = parse_config(
        {
            "dkim": {"keys": [{"domain": "Example.COM", "selector": "s1", "key_file": "/k.pem"}]},
            "webhooks": [{"url": "https://hooks.example.com/", "secret": SECRET, "events": ["bounced"]}],
        }
    )

    assert config.dkim_keys == (model.DkimKey("example.com", "s1", Path("/k.pem"), "rsa-sha256"),)
    assert config.webhooks == (model.Webhook("https://hooks.example.com/", SECRET, ("bounced",)),)


@pytest.mark.parametrize(
    "secret",
    [
        "s3cret-value",
        "whsec_",
        "whsec_not base64!",
        "whsec_" + "A" * 20,
        "whsec_c2hvcnQ=",
        "whsec_" + "A" * 100,
    ],
)
def test_bad_webhook_secret_not_shown(secret):
    with pytest.raises(ConfigError) as raised:
        parse_config({"webhooks": [{"url": "https://x.example/", "secret": secret}]})

    message = str(raised.value)
    assert message.startswith("webhooks[0].secret: invalid secret")
    assert "whsec_" in message
    assert secret not in message.replace('"whsec_"', "")


def test_webhook_entry_values():
    config = parse_config(
        {
            "webhooks": [
                {
                    "url": "http://127.0.0.1:8080/hooks",
                    "secret": SECRET,
                    "timeout": "2s",
                    "max_concurrency": 8,
                    "retry": {"first": "1s", "give_up": "1d"},
                }
            ]
        }
    )
    hook = config.webhooks[0]

    assert hook.events == model.WEBHOOK_EVENTS
    assert hook.timeout == 2.0
    assert hook.max_concurrency == 8
    assert hook.retry == dataclasses.replace(model.WEBHOOK_RETRY, first=1.0, give_up=86400.0)
    assert SECRET not in repr(hook)


def test_suppression_and_idempotency_values():
    config = parse_config(
        {
            "suppression": {"codes": ["5.1.x", "5.2.1"], "action": "drop", "ttl": "90d"},
            "idempotency": {"window": "2s", "by_message_id": True},
        }
    )

    assert config.suppression == model.SuppressionConfig(codes=("5.1.x", "5.2.1"), action="drop", ttl=90 * 86400.0)
    assert config.idempotency == model.IdempotencyConfig(window=2.0, by_message_id=True)


def test_auth_retry_defaults():
    config = parse_config({})
    auth = config.classes["auth"].retry

    assert auth.first == 5.0
    assert auth.max_interval == 60.0
    assert auth.give_up == 900.0
    assert auth.multiplier == model.RetryPolicy().multiplier


def test_auth_defaults_beat_retry_section():
    config = parse_config({"retry": {"first": "1m", "max_interval": "2h", "give_up": "3d", "multiplier": 3.0}})
    auth = config.classes["auth"].retry

    assert auth.first == 5.0
    assert auth.max_interval == 60.0
    assert auth.give_up == 900.0
    assert auth.multiplier == 3.0


def test_retry_section_flows_to_transactional():
    config = parse_config({"retry": {"first": "1m", "max_interval": "2h", "give_up": "3d", "multiplier": 3.0}})

    assert config.classes["transactional"].retry == model.RetryPolicy(60.0, 3.0, 7200.0, 3 * 86400.0)
    assert config.retry == model.RetryPolicy(60.0, 3.0, 7200.0, 3 * 86400.0)


def test_notification_keeps_own_give_up():
    config = parse_config({"retry": {"first": "1m", "give_up": "3d"}})
    notification = config.classes["notification"].retry

    assert notification.first == 60.0
    assert notification.give_up == 5 * 86400.0


def test_class_file_overrides_win():
    config = parse_config(
        {
            "retry": {"first": "1m"},
            "classes": {
                "auth": {"deadline": "2s", "retry": {"first": "2s", "give_up": "30m"}},
                "transactional": {"retry": {"first": "10s"}},
            },
        }
    )
    auth = config.classes["auth"]

    assert auth.deadline == 2.0
    assert auth.retry.first == 2.0
    assert auth.retry.give_up == 1800.0
    assert auth.retry.max_interval == 60.0
    assert config.classes["transactional"].retry.first == 10.0
    assert config.classes["shipping"].retry.first == 60.0


def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    message = str(raised.value)
    assert str(path) in message
    assert "not found" in message


def test_load_invalid_toml(tmp_path):
    path = tmp_path / "relayd.toml"
    path.write_text("[smtp\nlisten = 1\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    message = str(raised.value)
    assert str(path) in message
    assert "invalid TOML" in message


def test_load_invalid_utf8(tmp_path):
    path = tmp_path / "relayd.toml"
    path.write_bytes(b'[server]\nhostname = "r\xff.example"\n')

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(path) in str(raised.value)


def test_load_directory_path(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)

    assert "cannot read" in str(raised.value)


def test_load_sets_path(tmp_path):
    path = tmp_path / "relayd.toml"
    path.write_text('[delivery]\ntls = "off"\n')

    config = load_config(path)

    assert config.path == path
    assert config.delivery.tls == "off"


def test_load_validation_error(tmp_path):
    path = tmp_path / "relayd.toml"
    path.write_text("[smtp]\nlisen = []\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert re.match(r"smtp\.lisen( = |:)", str(raised.value))


def test_repository_config_loads():
    config = load_config(REPOSITORY_CONFIG)

    assert isinstance(config, Config)
    assert config.path == REPOSITORY_CONFIG
    assert config.server.hostname == "relay.example.com"
    assert config.smtp.max_message_size == 25_000_000
    assert config.classes["auth"].retry == model.RetryPolicy(5.0, 2.0, 60.0, 900.0)
    assert config.policy.alignment == "off"


def test_operations_keys_parsed():
    config = parse_config(
        {"server": {"shutdown_grace": "45s"}, "http": {"metrics_domains": ["Gmail.com", "bücher.example", "gmail.com"]}}
    )

    assert config.server.shutdown_grace == 45.0
    assert config.http.metrics_domains == ("gmail.com", "xn--bcher-kva.example")
