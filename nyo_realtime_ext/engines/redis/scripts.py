"""The engine's Lua scripts, read from this package's `.lua` files at import.

One file per script (`publish.lua`, `history.lua`, ...), each run with the shared
`prelude.lua` before it. Every key comes in as KEYS (keys.py lists each script's, all
under one hash tag) and every value as ARGV (ARGV[1] is always the pub/sub command):
no Lua is assembled from Python values, so a script's text, and the SHA Redis caches
it by, is the same on every node whatever its settings.
"""

from __future__ import annotations

from importlib.resources import files

NAMES = (
    # per channel
    "publish",
    "history",
    "join",
    "leave",
    "update",
    "renew",
    "retire",
    "members",
    "reprofile",
    "collect",
    "state",
    "snapshot",
    # per user
    "enter",
    "profile",
    "forget",
    # per tenant
    "create",
    "unlist",
)

_HERE = files(__package__)
PRELUDE = _HERE.joinpath("prelude.lua").read_text(encoding="utf-8")
# Script name -> its full source (the prelude, then the script).
SCRIPTS = {
    name: PRELUDE + "\n" + _HERE.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    for name in NAMES
}
