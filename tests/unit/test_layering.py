"""The layer table of ARCHITECTURE.md, enforced by walking every module's imports (ast only).

| layer | packages                    | may import                                      |
| L0    | core                        | stdlib                                          |
| L1    | message, proto, dns, config | core (proto and core: stdlib only besides)      |
|       | metrics                     | core (and prometheus_client)                    |
| L2    | store                       | core, message                                   |
| L3    | policy                      | L0-L2, of store only store.api                  |
| L4    | intake, outbound, access    | L0-L3                                           |
| L5    | serve, api                  | L0-L4                                           |
| L6    | app, cli                    | everything; only these name store.sqlite        |

Packages that do not exist yet are skipped; a package missing from the table fails.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mailwright"

LAYERS = {
    "core": 0,
    "message": 1,
    "proto": 1,
    "dns": 1,
    "config": 1,
    "metrics": 1,
    "store": 2,
    "policy": 3,
    "intake": 4,
    "outbound": 4,
    "access": 4,
    "serve": 5,
    "api": 5,
    "app": 6,
    "cli": 6,
    "__main__": 6,
}
# Where the table's "may import" column is narrower than "any lower layer".
ONLY = {
    "core": frozenset(),
    "message": frozenset({"core"}),
    "proto": frozenset({"core"}),
    "dns": frozenset({"core"}),
    "config": frozenset({"core"}),
    "metrics": frozenset({"core"}),
    "store": frozenset({"core", "message"}),
}
TOP = 6  # app and cli may import everything, each other included
POLICY_STORE = "mailwright.store.api"
CONCRETE_STORE = "mailwright.store.sqlite"
STDLIB_ONLY = frozenset({"core", "proto"})
NOT_IN_PROTO = frozenset({"asyncio", "ssl", "socket", "selectors", "sqlite3"})


@dataclass(frozen=True)
class Import:
    module: str  # dotted name of the importing module
    line: int
    target: str  # dotted name imported ("" for a relative import)
    relative: bool = False


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The top-level mailwright package (layer key) a dotted module name belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mailwright" else None


def _is_module(dotted: str, root: Path) -> bool:
    path = root.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def imports_in(source: str, module: str, root: Path = SRC) -> list[Import]:
    """Every import in ``source``, including ones under ``if TYPE_CHECKING`` or in functions."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(Import(module, node.lineno, node.module or "", relative=True))
                continue
            base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_sub = base.startswith("mailwright") and _is_module(sub, root)
                found.append(Import(module, node.lineno, sub if is_sub else base))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("__import__", "import_module")
                )
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(module, node.lineno, node.args[0].value))
    return found


def problem(imp: Import) -> str | None:
    """Why ``imp`` breaks the layer table, or None."""
    if imp.relative:
        return "relative import (absolute imports only)"
    pkg = package_of(imp.module)
    if pkg is None:
        return None  # the root package's own __init__
    if pkg not in LAYERS:
        return f"mailwright.{pkg} is not in the layer table"
    top = imp.target.split(".")[0]
    if top != "mailwright":
        if pkg in STDLIB_ONLY and top not in sys.stdlib_module_names:
            return f"{pkg} may import only the standard library, not {top}"
        if pkg == "proto" and top in NOT_IN_PROTO:
            return f"proto is sans-IO: no {top}"
        return None
    dep = package_of(imp.target)
    if dep is None:
        return None  # "from mailwright import __version__"
    if imp.target.startswith(CONCRETE_STORE) and not (
        pkg in ("app", "cli") or imp.module.startswith(CONCRETE_STORE)
    ):
        return f"only app and cli may name the concrete store {CONCRETE_STORE}"
    if dep == pkg or LAYERS.get(pkg) == TOP:
        return None
    if dep not in LAYERS:
        return f"mailwright.{dep} is not in the layer table"
    if LAYERS[dep] >= LAYERS[pkg]:
        return f"{pkg} (L{LAYERS[pkg]}) may not import {dep} (L{LAYERS[dep]})"
    if pkg in ONLY and dep not in ONLY[pkg]:
        allowed = ", ".join(sorted(ONLY[pkg])) or "stdlib only"
        return f"{pkg} may import only {allowed}, not {dep}"
    if pkg == "policy" and dep == "store" and not imp.target.startswith(POLICY_STORE):
        return f"policy may import only {POLICY_STORE} from store, not {imp.target}"
    return None


def source_files(root: Path = SRC) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def all_imports(root: Path = SRC) -> list[Import]:
    found: list[Import] = []
    for path in source_files(root):
        found += imports_in(path.read_text(encoding="utf-8"), module_name(path, root), root)
    return found


def report(imports: list[Import]) -> list[str]:
    return [
        f"{imp.module}:{imp.line} imports {imp.target or '(relative)'}: {why}"
        for imp in imports
        if (why := problem(imp)) is not None
    ]


# -- the real tree ------------------------------------------------------------------


def test_source_tree_found() -> None:
    assert (SRC / "__init__.py").is_file()
    assert (SRC / "core").is_dir() and (SRC / "proto").is_dir()


def test_every_package_is_in_the_layer_table() -> None:
    names = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py")
    } - {"__init__"}
    assert names - LAYERS.keys() == set(), "add new packages to the layer table"


def test_imports_follow_the_layer_table() -> None:
    assert report(all_imports()) == []


def test_proto_imports_nothing_with_io() -> None:
    proto = [i for i in all_imports() if package_of(i.module) == "proto"]
    assert proto, "proto has modules"
    assert {i.target.split(".")[0] for i in proto} & NOT_IN_PROTO == set()


def test_only_app_and_cli_name_the_concrete_store() -> None:
    users = {
        package_of(i.module)
        for i in all_imports()
        if i.target.startswith(CONCRETE_STORE) and not i.module.startswith(CONCRETE_STORE)
    }
    assert users <= {"app", "cli"}


def _is_data_only(package: Path) -> bool:
    """A directory that is a package only so that importlib.resources finds its files."""
    return [p.name for p in package.glob("*.py")] == ["__init__.py"] and not (
        package / "__init__.py"
    ).read_text(encoding="utf-8").strip()


PACKAGES = sorted(
    p.parent
    for p in SRC.rglob("__init__.py")
    if "__pycache__" not in p.parts and p.parent != SRC and not _is_data_only(p.parent)
)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: module_name(p / "__init__.py"))
def test_package_docstring_ends_with_may_import(package: Path) -> None:
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc, "package __init__.py needs a docstring"
    assert doc.strip().splitlines()[-1].startswith("May import:")


# -- the checker itself --------------------------------------------------------------


def check(source: str, module: str, root: Path = SRC) -> list[str]:
    return report(imports_in(source, module, root))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("mailwright.core.x", "import re, ipaddress\nfrom dataclasses import dataclass"),
        ("mailwright.core.x", "from mailwright.core.reply import Reply"),
        ("mailwright.proto.smtp.x", "from mailwright.core.address import Address"),
        ("mailwright.proto.smtp.x", "from mailwright.proto.smtp import replies"),
        ("mailwright.message.x", "import mailwright.core.reply"),
        ("mailwright.store.api", "from mailwright.message import scan"),
        (
            "mailwright.store.sqlite.store",
            "import sqlite3, asyncio\nfrom mailwright.store.sqlite.db import W",
        ),
        ("mailwright.policy.x", "from mailwright.store.api import Accounts"),
        ("mailwright.policy.x", "from mailwright.store import api"),
        ("mailwright.policy.x", "from mailwright.proto.smtp import replies"),
        ("mailwright.intake.x", "from mailwright.policy.verdict import Accept\nimport argon2"),
        ("mailwright.intake.x", "from mailwright.store.errors import NotFound"),
        ("mailwright.serve.x", "import asyncio, ssl\nfrom mailwright.intake import smtp"),
        ("mailwright.app", "from mailwright.store.sqlite import SqliteStore"),
        (
            "mailwright.cli.main",
            "from mailwright import __version__\nfrom mailwright.app import run",
        ),
        ("mailwright.cli.main", "def f():\n    from mailwright.serve.tls import x"),
    ],
)
def test_checker_allows(module: str, source: str) -> None:
    assert check(source, module) == []


@pytest.mark.parametrize(
    ("module", "source", "fragment"),
    [
        ("mailwright.proto.smtp.x", "import asyncio", "sans-IO: no asyncio"),
        ("mailwright.proto.smtp.x", "import ssl", "sans-IO: no ssl"),
        ("mailwright.proto.smtp.x", "from socket import socket", "sans-IO: no socket"),
        ("mailwright.proto.smtp.x", "import selectors", "sans-IO: no selectors"),
        ("mailwright.proto.smtp.x", "import sqlite3", "sans-IO: no sqlite3"),
        ("mailwright.proto.x", "import argon2", "only the standard library"),
        ("mailwright.core.x", "from cryptography import x509", "only the standard library"),
        ("mailwright.core.x", "from mailwright.proto.smtp import replies", "core (L0) may not"),
        ("mailwright.proto.x", "from mailwright.message import scan", "proto (L1) may not"),
        ("mailwright.proto.x", "from mailwright.store.api import Messages", "(L1) may not"),
        ("mailwright.message.x", "from mailwright.config import Config", "(L1) may not"),
        ("mailwright.store.api", "from mailwright.config import Config", "only core, message"),
        ("mailwright.store.api", "from mailwright.policy import verdict", "(L2) may not"),
        ("mailwright.policy.x", "from mailwright.store.errors import NotFound", "store.api"),
        ("mailwright.policy.x", "import mailwright.store", "store.api"),
        ("mailwright.policy.x", "from mailwright.intake import smtp", "(L3) may not"),
        ("mailwright.intake.x", "from mailwright.outbound import runner", "(L4) may not"),
        ("mailwright.intake.x", "from mailwright.serve.smtp import S", "(L4) may not"),
        ("mailwright.serve.x", "from mailwright.store.sqlite import SqliteStore", "concrete"),
        ("mailwright.intake.x", "import mailwright.store.sqlite.db", "concrete"),
        ("mailwright.store.api", "from mailwright.store import sqlite", "concrete"),
        ("mailwright.serve.x", "from mailwright.cli import main", "(L5) may not"),
        ("mailwright.intake.x", "from mailwright.nonesuch import x", "not in the layer table"),
        ("mailwright.nonesuch.x", "import re", "not in the layer table"),
        ("mailwright.intake.x", "from . import routing", "relative import"),
        ("mailwright.intake.x", "from .routing import Router", "relative import"),
        ("mailwright.proto.x", "import importlib\nimportlib.import_module('asyncio')", "asyncio"),
        ("mailwright.core.x", "__import__('mailwright.store.api')", "core (L0) may not"),
        (
            "mailwright.proto.x",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio",
            "asyncio",
        ),
    ],
)
def test_checker_refuses(module: str, source: str, fragment: str) -> None:
    problems = check(source, module)
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_checker_resolves_submodules_from_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "mailwright"
    (root / "store" / "sqlite").mkdir(parents=True)
    for init in (root, root / "store", root / "store" / "sqlite"):
        (init / "__init__.py").write_text("")
    (root / "store" / "api.py").write_text("")
    imports = imports_in("from mailwright.store import api, errors, sqlite", "mailwright.x", root)
    assert [i.target for i in imports] == [
        "mailwright.store.api",
        "mailwright.store",
        "mailwright.store.sqlite",
    ]
    assert module_name(root / "store" / "sqlite" / "__init__.py", root) == "mailwright.store.sqlite"
    assert module_name(root / "store" / "api.py", root) == "mailwright.store.api"
