"""The [dns] and [outbound] configuration sections: defaults, checks naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from mailwright.config import parse_config
from mailwright.config.model import DnsConfig, OutboundConfig, SmtpClientTimeouts
from mailwright.core.errors import ConfigError


def test_defaults_are_rfc_5321_timeouts() -> None:
    config = parse_config({"data_dir": "/d"})
    assert config.dns == DnsConfig()
    assert config.dns.nameservers == () and config.dns.port == 53 and not config.dns.prefer_ipv6
    assert config.outbound == OutboundConfig()
    t = config.outbound.timeouts
    assert (t.greeting, t.mail, t.rcpt, t.data_init, t.data_block, t.data_done) == (
        300.0, 300.0, 300.0, 120.0, 180.0, 600.0,
    )  # fmt: skip
    assert config.outbound.tls_policy == "opportunistic"
    assert config.outbound.smarthost.host == ""


def test_sections_from_toml_and_environment() -> None:
    config = parse_config(
        {
            "data_dir": "/d",
            "dns": {"nameservers": ["127.0.0.1"], "port": 5353, "prefer_ipv6": True},
            "outbound": {"tls_policies": ["a.test=verify", "b.test = none"]},
        },
        environ={"MAILWRIGHT_OUTBOUND__SMARTHOST__HOST": "relay.isp.test"},
    )
    assert config.dns.nameservers == ("127.0.0.1",) and config.dns.port == 5353
    assert config.outbound.smarthost.host == "relay.isp.test"
    assert config.outbound.policy_for("A.TEST.") == "verify"
    assert config.outbound.policy_for("b.test") == "none"
    assert config.outbound.policy_for("c.test") == "opportunistic"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dns": {"port": 0}}, "dns.port"),
        ({"dns": {"timeout": 0}}, "dns.timeout"),
        ({"dns": {"lifetime": -1}}, "dns.lifetime"),
        ({"outbound": {"port": 70000}}, "outbound.port"),
        ({"outbound": {"tls_policy": "maybe"}}, "outbound.tls_policy"),
        ({"outbound": {"tls_policies": ["a.test"]}}, "outbound.tls_policies[0]"),
        (
            {"outbound": {"tls_policies": ["ok.test=none", "a.test=strict"]}},
            "outbound.tls_policies[1]",
        ),
        ({"outbound": {"timeouts": {"data_done": 0}}}, "outbound.timeouts.data_done"),
        ({"outbound": {"smarthost": {"port": 0}}}, "outbound.smarthost.port"),
        ({"outbound": {"smarthost": {"host": "a b"}}}, "outbound.smarthost.host"),
        ({"outbound": {"smarthost": {"password": "x"}}}, "outbound.smarthost.username"),
        ({"outbound": {"smarthost": {"tls": "none"}}}, "outbound.smarthost.tls"),
    ],
)
def test_invalid_settings_name_their_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"data_dir": "/d", **data})
    assert info.value.key == key


def test_timeouts_dataclass_checks_directly() -> None:
    with pytest.raises(ConfigError):
        SmtpClientTimeouts(rcpt=0)
