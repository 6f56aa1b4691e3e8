"""Hands the realtime URL and a token to the kernels a Jupyter server starts.

jupyter_server has no simple per-kernel environment hook for extensions, but
kernels inherit the server's environment. So when the extension loads, it
sets `NYO_REALTIME_URL` (the WebSocket URL, with `base_url`) and
`NYO_REALTIME_TOKEN` in `os.environ`, and `client.connect()` in a kernel
needs no arguments.

The token is a random secret made per server process and accepted by this
server only (`Authenticator.trust_token`) as the server's own user. It works
whether or not a JWT key is configured, and it grants nothing that the
kernel, which runs as the same OS user as the server, does not already have.
It is sent in a header, never in a URL. The user is the one a person would
recognise: JupyterHub's user, else `Realtime.kernel_user`, else the OS user
(with the full name of the account), never an "Anonymous" made-up name.
"""

from __future__ import annotations

import getpass
import os
import secrets
from typing import Any

from tornado.ioloop import IOLoop

from .constants import ENV_TOKEN, ENV_URL, WS_PATH
from .models import Identity
from .service import RealtimeService

_installed: dict[str, str] = {}


def kernel_identity(config: Any) -> Identity:
    """Who the kernels of this server are."""
    user_id = config.kernel_user or os.environ.get("JUPYTERHUB_USER") or _os_user() or "jupyter"
    name = config.kernel_user_name or _full_name(user_id) or user_id
    return Identity(user_id=user_id, tenant_id=config.default_tenant, name=name)


def document_scope(config: Any) -> str:
    """The scope of this server's document channels (`Realtime.document_scope`)."""
    if config.document_scope is not None:
        return config.document_scope
    server_name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    user_id = kernel_identity(config).user_id
    return f"{user_id}/{server_name}" if server_name else user_id


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no $USER: e.g. an arbitrary uid in a container
        return None


def _full_name(user_id: str) -> str | None:
    """The GECOS full name of the OS account `user_id`, if there is one."""
    try:
        import pwd

        gecos = pwd.getpwnam(user_id).pw_gecos
    except (ImportError, KeyError):
        return None
    return gecos.split(",")[0].strip() or None


def realtime_ws_url(serverapp: Any) -> str | None:
    """The WebSocket URL of the extension, as a kernel on this machine reaches it."""
    if getattr(serverapp, "sock", ""):
        return None  # a Unix socket: tornado's client cannot dial it; kernels fall back
    ip = serverapp.ip or "localhost"
    if ip in ("localhost", "0.0.0.0", "*", ""):
        host = "127.0.0.1"
    elif ip == "::":
        host = "[::1]"
    elif ":" in ip:
        host = f"[{ip}]"
    else:
        host = ip
    scheme = "wss" if serverapp.certfile else "ws"
    base_url = serverapp.base_url if serverapp.base_url.endswith("/") else serverapp.base_url + "/"
    return f"{scheme}://{host}:{serverapp.port}{base_url}{WS_PATH}"


def _set(name: str, value: str) -> None:
    os.environ[name] = value
    _installed[name] = value


def setup_kernel_env(serverapp: Any, service: RealtimeService) -> None:
    """Trust a fresh token for the kernels' user and put it and the URL in the environment."""
    token = secrets.token_urlsafe(32)
    service.authenticator.trust_token(token, kernel_identity(service.config))
    _set(ENV_TOKEN, token)

    def set_url() -> None:
        url = realtime_ws_url(serverapp)
        if url is not None:
            _set(ENV_URL, url)

    set_url()
    # Extensions load before the server picks its port (`port_retries` may move
    # it); by the time the loop runs the port is final, and no kernel has started.
    IOLoop.current().add_callback(set_url)


def clear_kernel_env() -> None:
    """Remove what `setup_kernel_env` set, unless someone changed it since."""
    for name, value in list(_installed.items()):
        if os.environ.get(name) == value:
            del os.environ[name]
        del _installed[name]
