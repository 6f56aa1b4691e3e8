"""The engine's Lua scripts, read from this package's `.lua` files at import.

One file per script (`publish.lua`, `history.lua`, ...), each run with the shared
`prelude.lua` before it. Every value comes in as ARGV (ARGV[1] is always the key
prefix): no Lua is assembled from Python values, so a script's text, and the SHA
Redis caches it by, is the same on every node whatever its settings. Newer scripts
(`state.lua`) get every key they touch in KEYS, built in Python, as Redis Cluster
needs; they use nothing of the prelude that builds keys.
"""

from __future__ import annotations

from importlib.resources import files

NAMES = (
    "publish",
    "history",
    "join",
    "leave",
    "update",
    "profile",
    "maintain",
    "retire",
    "collect",
    "create",
    "state",
)

_HERE = files(__package__)
PRELUDE = _HERE.joinpath("prelude.lua").read_text(encoding="utf-8")
# Script name -> its full source (the prelude, then the script).
SCRIPTS = {
    name: PRELUDE + "\n" + _HERE.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    for name in NAMES
}
