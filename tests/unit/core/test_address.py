"""RFC 5321 §4.1.2 mailboxes and paths, with RFC 6531 UTF-8 where allowed."""

from __future__ import annotations

import pytest

from mailwright.core.address import MAX_LOCAL, MAX_PATH, Address, AddressError, parse_path

# -- Address.parse ----------------------------------------------------------------

VALID = [
    # text, utf8, local, domain
    ("user@example.test", False, "user", "example.test"),
    ("User.Name@Example.TEST", False, "User.Name", "example.test"),
    ("a@b", False, "a", "b"),
    ("a+tag@sub.example.test", False, "a+tag", "sub.example.test"),
    ("!#$%&'*+-/=?^_`{|}~@example.test", False, "!#$%&'*+-/=?^_`{|}~", "example.test"),
    ("x@123.example", False, "x", "123.example"),
    ("x@a-b.example", False, "x", "a-b.example"),
    ("x@" + "a" * 63 + ".example", False, "x", "a" * 63 + ".example"),
    ("l" * MAX_LOCAL + "@example.test", False, "l" * MAX_LOCAL, "example.test"),
    # quoted local parts (qtextSMTP / quoted-pairSMTP)
    ('"john doe"@example.test', False, '"john doe"', "example.test"),
    ('""@example.test', False, '""', "example.test"),
    ('"a@b"@example.test', False, '"a@b"', "example.test"),
    ('"a\\"b"@example.test', False, '"a\\"b"', "example.test"),
    ('"a\\\\b"@example.test', False, '"a\\\\b"', "example.test"),
    ('"a.b."@example.test', False, '"a.b."', "example.test"),
    ('"<>"@example.test', False, '"<>"', "example.test"),
    # address literals
    ("x@[192.0.2.1]", False, "x", "[192.0.2.1]"),
    ("x@[IPv6:2001:db8::1]", False, "x", "[ipv6:2001:db8::1]"),
    ("x@[IPv6:::ffff:192.0.2.1]", False, "x", "[ipv6:::ffff:192.0.2.1]"),
    ("x@[tag:some-thing]", False, "x", "[tag:some-thing]"),
    # RFC 6531
    ("jörg@exämple.test", True, "jörg", "exämple.test"),
    ("用户@例子.测试", True, "用户", "例子.测试"),
    ('"jö rg"@example.test', True, '"jö rg"', "example.test"),
    ("ascii@example.test", True, "ascii", "example.test"),
    ("x@xn--bcher-kva.example", False, "x", "xn--bcher-kva.example"),
    ("x@bü-cher.example", True, "x", "bü-cher.example"),
]


@pytest.mark.parametrize(("text", "utf8", "local", "domain"), VALID)
def test_parse_valid(text: str, utf8: bool, local: str, domain: str) -> None:
    address = Address.parse(text, utf8=utf8)
    assert (address.local, address.domain) == (local, domain)
    assert str(address) == f"{local}@{domain}"


INVALID = [
    # text, utf8, message fragment
    ("", False, "local-part@domain"),
    ("user", False, "local-part@domain"),
    ("@example.test", False, "local-part@domain"),
    ("user@", False, "invalid domain"),
    ("l" * (MAX_LOCAL + 1) + "@example.test", False, "64 octets"),
    ("ö" * 33 + "@example.test", True, "64 octets"),  # 66 octets in UTF-8
    ("jörg@example.test", False, "non-ASCII"),
    ("x@exämple.test", False, "non-ASCII"),
    (".user@example.test", False, "invalid local part"),
    ("user.@example.test", False, "invalid local part"),
    ("us..er@example.test", False, "invalid local part"),
    ("us er@example.test", False, "invalid local part"),
    ("us(er@example.test", False, "invalid local part"),
    ("a@b@example.test", False, "invalid local part"),
    ("us\rer@example.test", False, "invalid local part"),
    ("us\ner@example.test", False, "invalid local part"),
    ("us\0er@example.test", False, "invalid local part"),
    ('"unterminated@example.test', False, "invalid local part"),
    ('"a"b"@example.test', False, "invalid local part"),
    ('"a\rb"@example.test', False, "invalid local part"),
    ('"a\\\nb"@example.test', False, "invalid local part"),
    ('"tab\there"@example.test', False, "invalid local part"),
    ('"jö"@example.test', False, "non-ASCII"),
    ("x@-a.example", False, "invalid domain"),
    ("x@a-.example", False, "invalid domain"),
    ("x@bü-.example", True, "invalid domain"),
    ("x@-bü.example", True, "invalid domain"),
    ("x@a..example", False, "invalid domain"),
    ("x@.example", False, "invalid domain"),
    ("x@example.", False, "invalid domain"),
    ("x@exa_mple.test", False, "invalid domain"),
    ("x@exa mple.test", False, "invalid domain"),
    ("x@" + "a" * 64 + ".example", False, "invalid domain"),
    ("x@" + ".".join(["a" * 60] * 5), False, "invalid domain"),  # > 255 octets
    ("x@[192.0.2.1", False, "invalid domain"),
    ("x@[192.0.2.256]", False, "invalid domain"),
    ("x@[192.0.2]", False, "invalid domain"),
    ("x@[]", False, "invalid domain"),
    ("x@[IPv6:2001:db8::g]", False, "invalid domain"),
    ("x@[IPv6:192.0.2.1]", False, "invalid domain"),
    ("x@[IPv6:fe80::1%eth0]", False, "invalid domain"),  # no zone index in RFC 5321
    ("x@[1tag:abc]", False, "invalid domain"),
    ("x@[tag:a[b]", False, "invalid domain"),
    ("x@[tag:]", False, "invalid domain"),
    ("x@[-:abc]", False, "invalid domain"),
]


@pytest.mark.parametrize(("text", "utf8", "fragment"), INVALID)
def test_parse_invalid(text: str, utf8: bool, fragment: str) -> None:
    with pytest.raises(AddressError, match=fragment):
        Address.parse(text, utf8=utf8)


def test_address_error_is_value_error() -> None:
    assert issubclass(AddressError, ValueError)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("User@Example.TEST", "user@example.test"),
        ('"Mixed Case"@example.test', '"mixed case"@example.test'),
        ("JÖRG@EXÄMPLE.test", "jörg@exämple.test"),
    ],
)
def test_key_is_case_folded(text: str, key: str) -> None:
    assert Address.parse(text, utf8=True).key == key


def test_is_quoted() -> None:
    assert Address.parse('"a b"@example.test').is_quoted
    assert not Address.parse("ab@example.test").is_quoted


def test_address_is_frozen_and_hashable() -> None:
    a = Address.parse("a@Example.test")
    assert a == Address("a", "example.test")
    assert {a: 1}[Address("a", "example.test")] == 1
    with pytest.raises(AttributeError):
        a.local = "b"  # type: ignore[misc]


# -- parse_path ---------------------------------------------------------------------

PATHS = [
    # text, utf8, allow_null, expected
    ("<user@example.test>", False, False, Address("user", "example.test")),
    ("<>", False, True, None),
    ("<@relay.example:user@example.test>", False, False, Address("user", "example.test")),
    ("<@r1.example,@r2.example:u@example.test>", False, False, Address("u", "example.test")),
    ("<@[192.0.2.1]:u@example.test>", False, False, Address("u", "example.test")),
    ('<"a:b"@example.test>', False, False, Address('"a:b"', "example.test")),
    ('<"a>b"@example.test>', False, False, Address('"a>b"', "example.test")),
    ("<jörg@exämple.test>", True, False, Address("jörg", "exämple.test")),
    ("<@relais.exämple:jörg@exämple.test>", True, False, Address("jörg", "exämple.test")),
]


@pytest.mark.parametrize(("text", "utf8", "allow_null", "expected"), PATHS)
def test_parse_path_valid(
    text: str, utf8: bool, allow_null: bool, expected: Address | None
) -> None:
    assert parse_path(text, utf8=utf8, allow_null=allow_null) == expected


BAD_PATHS = [
    # text, utf8, allow_null, message fragment
    ("<>", False, False, "null path"),
    ("", False, True, "enclosed in <>"),
    ("<", False, True, "enclosed in <>"),
    ("user@example.test", False, False, "enclosed in <>"),
    ("<user@example.test", False, False, "enclosed in <>"),
    ("user@example.test>", False, False, "enclosed in <>"),
    (" <user@example.test>", False, False, "enclosed in <>"),
    ("<user>", False, False, "local-part@domain"),
    ("<postmaster>", False, False, "local-part@domain"),
    ("<@relay.example>", False, False, "invalid source route"),
    ("<@relay.example,user@example.test>", False, False, "invalid source route"),
    ("<@relay.example,relay2.example:u@example.test>", False, False, "invalid source route"),
    ("<@:u@example.test>", False, False, "invalid source route"),
    ("<@re lay.example:u@example.test>", False, False, "invalid source route"),
    ("<@relais.exämple:u@example.test>", False, False, "invalid source route"),
    ("<@relay.example:@b.example:u@example.test>", False, False, "invalid local part"),
    ("<jörg@example.test>", False, False, "non-ASCII"),
    ("<a@b> ", False, False, "enclosed in <>"),
]


@pytest.mark.parametrize(("text", "utf8", "allow_null", "fragment"), BAD_PATHS)
def test_parse_path_invalid(text: str, utf8: bool, allow_null: bool, fragment: str) -> None:
    with pytest.raises(AddressError, match=fragment):
        parse_path(text, utf8=utf8, allow_null=allow_null)


def test_path_length_limit_includes_brackets() -> None:
    domain = ".".join(["d" * 60] * 3) + ".example"
    local = "l" * (MAX_PATH - 3 - len(domain))
    assert len(local) <= 64
    path = f"<{local}@{domain}>"
    assert len(path) == MAX_PATH
    assert parse_path(path) == Address(local, domain)
    with pytest.raises(AddressError, match="256"):
        parse_path(f"<{local}x@{domain}>")


def test_path_length_counts_utf8_octets() -> None:
    domain = ".".join(["d" * 60] * 3) + ".example"
    local = "ö" * ((MAX_PATH - 3 - len(domain)) // 2 + 1)
    with pytest.raises(AddressError, match="256"):
        parse_path(f"<{local}@{domain}>", utf8=True)


def test_long_source_route_counts_toward_path_length() -> None:
    route = ",".join(["@relay.example"] * 20)
    with pytest.raises(AddressError, match="256"):
        parse_path(f"<{route}:u@example.test>")


def test_bare_postmaster_only_where_allowed() -> None:
    from mailwright.core.address import Address, AddressError, parse_path

    assert parse_path("<Postmaster>", allow_postmaster=True) == Address("postmaster", "")
    assert parse_path("<POSTMASTER>", allow_postmaster=True).is_bare_postmaster  # type: ignore[union-attr]
    assert str(Address("postmaster", "")) == "postmaster"
    import pytest

    with pytest.raises(AddressError):
        parse_path("<Postmaster>")
