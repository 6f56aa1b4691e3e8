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
It is sent in a header, never in a URL.

Who a kernel is (issue 22: a kernel must never count as a person):

- Where the kernel's identity is a person's, it is that person (`kind`
  "person"): JupyterHub's user (`JUPYTERHUB_USER`), or the owner an
  administrator named with `Realtime.kernel_user` / `kernel_user_name`. Their
  browsers are the same user, so the kernel is one more connection of theirs.
- Otherwise (a single-user server with token login: each browser is an
  anonymous person, and the OS user is nobody's name) the kernel is a kernel
  (`kind` "kernel"): a member of its own, "demo.ipynb's kernel", whom clients
  list apart from the people and never count as one. Each notebook's kernel
  gets a token of its own for that (the server's `SessionManager.get_kernel_env`
  adds it, knowing the notebook's path); a kernel started without a notebook
  session uses the server-wide token, "<os user>'s kernel".
"""

from __future__ import annotations

import os
import posixpath
import secrets
from typing import Any

from tornado.ioloop import IOLoop

from .constants import ENV_TOKEN, ENV_URL, KERNEL, PERSON, WS_PATH
from .documents import server_user
from .models import Identity
from .service import RealtimeService

_installed: dict[str, str] = {}
_wrapped: list[Any] = []  # the session manager whose `get_kernel_env` we wrapped


def kernels_are_a_person(config: Any) -> bool:
    """Whether this server's kernels act for a known person (JupyterHub, or configured)."""
    return bool(config.kernel_user or config.kernel_user_name or os.environ.get("JUPYTERHUB_USER"))


def kernel_identity(config: Any, path: str | None = None) -> Identity:
    """Who the kernels of this server are; `path`: the notebook a kernel is for."""
    user_id = server_user(config)
    if kernels_are_a_person(config):
        name = config.kernel_user_name or _full_name(user_id) or user_id
        return Identity(user_id=user_id, tenant_id=config.default_tenant, name=name, kind=PERSON)
    if path:
        # One member per notebook's kernel; the id keeps two servers' kernels apart.
        return Identity(
            user_id=f"{user_id}:kernel:{path}",
            tenant_id=config.default_tenant,
            name=f"{posixpath.basename(path) or path}'s kernel",
            kind=KERNEL,
        )
    return Identity(
        user_id=f"{user_id}:kernel",
        tenant_id=config.default_tenant,
        name=f"{user_id}'s kernel",
        kind=KERNEL,
    )


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
    if not kernels_are_a_person(service.config):
        _token_per_notebook(serverapp, service)


def _token_per_notebook(serverapp: Any, service: RealtimeService) -> None:
    """Give each notebook's kernel a token of its own: "<notebook>'s kernel".

    `SessionManager.get_kernel_env(path, name)` (jupyter_server 2) makes the
    environment of a session's kernel, and knows its notebook's path.
    """
    manager = getattr(serverapp, "session_manager", None)
    original = getattr(manager, "get_kernel_env", None)
    if manager is None or original is None:
        return  # an older server: every kernel has the server-wide token
    tokens: dict[str, str] = {}

    def get_kernel_env(path: str | None, name: Any = None) -> dict[str, str]:
        env = dict(original(path, name))
        notebook = _notebook_path(path, name)
        if notebook:
            token = tokens.get(notebook)
            if token is None:
                token = tokens[notebook] = secrets.token_urlsafe(32)
                identity = kernel_identity(service.config, notebook)
                service.authenticator.trust_token(token, identity)
            env[ENV_TOKEN] = token
        return env

    manager.get_kernel_env = get_kernel_env
    _wrapped.append(manager)


def _notebook_path(path: str | None, name: Any) -> str | None:
    """The notebook of a session: JupyterLab starts a session at `<dir>/<uuid>` and
    names it after the file (it moves it to the notebook's path afterwards)."""
    if name and isinstance(name, str):
        return posixpath.join(posixpath.dirname(path or ""), name)
    return path or None


def clear_kernel_env() -> None:
    """Remove what `setup_kernel_env` set, unless someone changed it since."""
    for name, value in list(_installed.items()):
        if os.environ.get(name) == value:
            del os.environ[name]
        del _installed[name]
    while _wrapped:
        manager = _wrapped.pop()
        if "get_kernel_env" in vars(manager):
            del manager.get_kernel_env
