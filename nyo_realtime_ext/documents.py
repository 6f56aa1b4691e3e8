"""Document channels: whose documents a `presence-doc@<scope>:<path>` channel is about,
and who may use it (issue 23, finding 7).

The JupyterLab extension shows, per open file, who else has it open and who ran
which cell, on one presence channel per document (labextension/src/channels.ts).
On JupyterHub each server has a home of its own, so the channel carries the
server's scope (`Realtime.document_scope`, by default its user, `ada` or
`ada/<server name>`). Without a rule anyone of the tenant could join Bob's
document channels and fill their history with forged `cell:executed` marks.

The rule: a scoped document channel may be read, be present on and published to
by
- anyone this server admits, when the scope is this server's own (whoever is let
  into a Jupyter server may open its files: on JupyterHub that is the hub's own
  access rule, `access:servers`, checked before a request reaches us);
- the scope's user: the part of the scope before its first `/` (`ada` for
  `ada/analysis`), the owner of those files, from whichever server;
- the users `Realtime.document_readers` lists for that scope.

A scope is compared in its escaped form, as it stands in the channel name, so
nothing is decoded and no two scopes can meet. A name cut short by its length
(its scope has no `:` after it) is nobody's: only refused.
"""

from __future__ import annotations

import getpass
import os
import re
from typing import Any

#: The prefix of a scoped document channel (labextension/src/channels.ts).
SCOPED_DOCUMENT_PREFIX = "presence-doc@"

# What a scope keeps as it is in a channel name; everything else becomes `=XX` per
# UTF-8 byte, exactly as channels.ts `escape(scope, SCOPE_ALLOWED)` does.
_SCOPE_ALLOWED = re.compile(r"[A-Za-z0-9_.-]")
_ESCAPED_SLASH = "=2F"


def server_user(config: Any) -> str:
    """The user this server runs for: JupyterHub's, `kernel_user`, else the OS user."""
    return config.kernel_user or os.environ.get("JUPYTERHUB_USER") or _os_user() or "jupyter"


def document_scope(config: Any) -> str:
    """The scope of this server's document channels (`Realtime.document_scope`)."""
    if config.document_scope is not None:
        return str(config.document_scope)
    server_name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    user_id = server_user(config)
    return f"{user_id}/{server_name}" if server_name else user_id


def escape_scope(scope: str) -> str:
    """`scope` as the front end writes it into a channel name."""
    return "".join(
        char
        if _SCOPE_ALLOWED.fullmatch(char)
        else "".join(f"={byte:02X}" for byte in char.encode("utf-8", "replace"))
        for char in scope
    )


def scope_in(channel: str) -> str | None:
    """The escaped scope of a scoped document channel; None for any other channel.
    A name with no `:` after its scope (cut short and hashed) gives "": nobody's."""
    if not channel.startswith(SCOPED_DOCUMENT_PREFIX):
        return None
    rest = channel[len(SCOPED_DOCUMENT_PREFIX) :]
    scope, colon, _path = rest.partition(":")
    return scope if colon else ""


def may_use_document(config: Any, user_id: str, channel: str) -> bool:
    """Whether `user_id` may read, be present on or publish to `channel` (the rule
    in this module's docstring); True for every channel that is not a scoped document's."""
    scope = scope_in(channel)
    if scope is None:
        return True
    if not scope:
        return False
    if scope == escape_scope(document_scope(config)):
        return True
    user = escape_scope(user_id)
    if scope == user or scope.startswith(user + _ESCAPED_SLASH):
        return True
    readers = config.document_readers or {}
    return any(
        escape_scope(listed_scope) == scope and user_id in users
        for listed_scope, users in readers.items()
    )


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no $USER: e.g. an arbitrary uid in a container
        return None
