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
    # The client side shares only `constants`, `colors` and `names` (the colour, and
    # which names look alike, that every client computes alike; they import nothing
    # of ours), and the client package itself.
    allowed = (f"{NAME}.constants", f"{NAME}.colors", f"{NAME}.names", *CLIENT_SIDE)
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


def test_every_redis_script_gets_its_keys_in_keys_under_one_hash_tag():
    # Redis Cluster runs a script on the shard of its keys: each must name every key it
    # touches in KEYS (none built from ARGV or the prefix), and they must share a slot.
    import re

    from redis.crc import key_slot

    from nyo_realtime_ext.engines.redis import scripts
    from nyo_realtime_ext.engines.redis.keys import Keys
    from nyo_realtime_ext.models import ChannelKey

    package = PACKAGE / "engines" / "redis"
    for path in package.glob("*.lua"):
        lua = path.read_text()
        # No key is assembled in Lua: no concatenation onto a key-like ':' string, no
        # prefix variable, and every redis.call names its key through KEYS or K.
        assert "ARGV[1] .." not in lua and "local P " not in lua, path.name
        for call in re.finditer(r"redis\.call\('([A-Z]+)', ([^,)]+)", lua):
            command, first = call.group(1), call.group(2).strip()
            if command in ("TIME",):
                continue
            assert first.startswith(("KEYS[", "K.", "PUB", "ARGV[1]")) or re.fullmatch(
                r"[a-z_]+", first
            ), f"{path.name}: {call.group(0)}"
            # A bare name must be a local bound from KEYS (or a prelude parameter).
            if re.fullmatch(r"[a-z_]+", first) and path.name != "prelude.lua":
                bound = re.search(rf"local [a-z_, ]*\b{first}\b[a-z_, ]* = (.*)", lua)
                assert bound and ("KEYS[" in bound.group(1) or "K." in bound.group(1)), first
        for used in re.findall(r"KEYS\[(\d+)\]", lua):
            assert int(used) >= 1
    keys = Keys("nyo-realtime")
    for key in (ChannelKey("acme", "room"), ChannelKey("a{b}", "c:d"), ChannelKey("", "x")):
        lists = [keys.publish(key), keys.history(key), keys.presence(key), keys.collect(key)]
        lists += [keys.state(key), keys.snapshot(key)]
        lists += [keys.registry(key.tenant), keys.profile(key.tenant, "ada")]
        for names in lists:
            assert len({key_slot(n.encode()) for n in names}) == 1, names
    # Each script's KEYS count matches what keys.py gives it.
    counts = {"publish": 3, "history": 2, "collect": 10, "create": 2, "unlist": 2}
    counts |= {"state": 4, "snapshot": 2}
    counts |= {n: 2 for n in ("enter", "profile", "forget")}
    counts |= {n: 7 for n in ("leave", "update", "renew", "retire", "members", "reprofile")}
    # join: the channel's 7; on one Redis (no slots) also the user's 2, for one round trip.
    counts["join"] = 9
    assert set(counts) == set(scripts.NAMES)
    for name, count in counts.items():
        lua = (package / f"{name}.lua").read_text()
        used = {int(i) for i in re.findall(r"KEYS\[(\d+)\]", lua)}
        if "presence_keys()" in lua:
            used |= set(range(1, 8))
        assert used and max(used) <= count, (name, used)
