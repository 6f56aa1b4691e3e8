"""The package's layout holds: the server never imports the client.

The client (and the widgets on top of it) runs in kernels; the server runs in
Jupyter or `nyo-realtime serve`. What both must agree on lives in
`nyo_realtime_ext/constants.py`, so neither side needs the other's code.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nyo_realtime_ext"
NAME = "nyo_realtime_ext"
# `chat_render` is what ChatWidget shows: Markdown made safe, in the kernel.
CLIENT_SIDE = (
    f"{NAME}.client",
    f"{NAME}.widgets",
    f"{NAME}.chat_render",
    f"{NAME}.linking",
    f"{NAME}.poll",
)
# The package's facade loads the client lazily (PEP 562), for users, never for the server.
FACADE = f"{NAME}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute, including `from x import y` as `x.y`
    (y may be a submodule)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_client_side(module: str) -> bool:
    return any(module == side or module.startswith(side + ".") for side in CLIENT_SIDE)


def server_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not is_client_side(module_name(path)) and module_name(path) != FACADE
    ]


def test_the_checks_see_the_whole_server():
    names = {module_name(path) for path in server_modules()}
    assert {
        f"{NAME}.hub",
        f"{NAME}.kernel_env",
        f"{NAME}.api.base",
        f"{NAME}.engines.redis",
    } <= names
    assert not any(is_client_side(name) for name in names)


def test_no_server_module_imports_the_client():
    offenders = {
        module_name(path): sorted(m for m in imported_modules(path) if is_client_side(m))
        for path in server_modules()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_client_imports_no_server_module():
    # The client side shares only `constants` and `colors` (the colour every client
    # computes alike; it imports nothing of ours), and the client package itself.
    allowed = (f"{NAME}.constants", f"{NAME}.colors", *CLIENT_SIDE)
    client_paths = [p for p in PACKAGE.rglob("*.py") if is_client_side(module_name(p))]
    assert client_paths
    offenders = {
        module_name(path): sorted(
            m
            for m in imported_modules(path)
            if m.startswith(NAME + ".") and not m.startswith(allowed)
        )
        for path in client_paths
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_starting_a_server_loads_no_client_module():
    # What actually happens at import time, lazy imports included.
    code = (
        "import sys, nyo_realtime_ext.extension, nyo_realtime_ext.server, nyo_realtime_ext.embed;"
        f"print([m for m in sys.modules if m.startswith({CLIENT_SIDE!r})])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_test_module_imports_another():
    # Shared helpers live in tests/support/ (hub_world.py, httpclient.py, tokens.py, ...):
    # importing a test module would also collect its tests and fixtures a second time.
    tests = Path(__file__).resolve().parent
    offenders = {}
    for path in sorted(tests.rglob("test_*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found.update(n for n in names if n.rpartition(".")[2].startswith("test_"))
        if found:
            offenders[path.name] = sorted(found)
    assert offenders == {}


def test_the_redis_engine_runs_every_lua_file_it_ships():
    # One .lua file per script plus the shared prelude, and no Lua left in Python.
    from nyo_realtime_ext.engines.redis import scripts

    package = PACKAGE / "engines" / "redis"
    assert {p.stem for p in package.glob("*.lua")} == {*scripts.NAMES, "prelude"}
    for name, source in scripts.SCRIPTS.items():
        assert source.startswith(scripts.PRELUDE), name
    engine = (package / "engine.py").read_text()
    assert "ARGV[" not in engine and "redis.call('" not in engine
