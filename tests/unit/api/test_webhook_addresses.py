"""Where webhooks may POST: public addresses, and others only inside allowed networks."""

from __future__ import annotations

import ipaddress

import pytest

from mailwright.api.webhooks import reachable
from mailwright.config import parse_config
from mailwright.core.errors import ConfigError


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.3.2.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata services live here
        "100.64.0.1",  # shared address space (RFC 6598)
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
    ],
)
def test_special_addresses_are_refused_by_default(address: str) -> None:
    assert not reachable(address, ())


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111"])
def test_public_addresses_are_reachable(address: str) -> None:
    assert reachable(address, ())


def test_allowed_networks_open_only_themselves() -> None:
    allowed = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert reachable("127.0.0.1", allowed)
    assert reachable("::ffff:127.0.0.1", allowed)  # the same address, mapped
    assert reachable("fd12::5", allowed)
    assert not reachable("10.0.0.1", allowed)
    assert not reachable("::1", allowed)
    assert reachable("8.8.8.8", allowed)


def test_config_names_a_bad_network() -> None:
    config = parse_config(
        {"data_dir": "/x", "webhooks": {"allowed_networks": ["127.0.0.0/8", "::1/128"]}}
    )
    assert [str(n) for n in config.webhooks.networks] == ["127.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError, match=r"webhooks\.allowed_networks\[1\]"):
        parse_config({"data_dir": "/x", "webhooks": {"allowed_networks": ["10.0.0.0/8", "lan"]}})
