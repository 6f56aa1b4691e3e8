"""Finding the server from a kernel: the environment the extension set, else the
Jupyter server that started the kernel (its running-server file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..constants import ENV_TOKEN, ENV_URL, WS_PATH
from .errors import RealtimeError


def discover() -> tuple[str, str | None, dict[str, str]]:
    """(url, token, headers) for a kernel: environment first, then the running server.

    The extension puts `NYO_REALTIME_URL` and `NYO_REALTIME_TOKEN` in the
    environment of the kernels its server starts (`kernel_env.py`). Failing
    that, the server that started this kernel (`JPY_PARENT_PID`) is looked up
    among the running-server files, and its Jupyter token is used: the
    realtime endpoint accepts Jupyter's own login.
    """
    url = os.environ.get(ENV_URL)
    token = os.environ.get(ENV_TOKEN) or None
    if url:
        return url, token, {}
    info = _parent_server_info()
    if info is None:
        raise RealtimeError(
            f"no realtime server found: pass a URL, set {ENV_URL}, or run in a kernel "
            "started by a Jupyter server that has the nyo_realtime_ext extension"
        )
    base = str(info.get("url", "")).rstrip("/") + "/"
    base_url = str(info.get("base_url", "/"))
    if base_url != "/" and not base.endswith(base_url):
        base = base.rstrip("/") + base_url
    ws_url = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    headers = {}
    if info.get("token"):
        headers["Authorization"] = f"token {info['token']}"
    return f"{ws_url}{WS_PATH}", token, headers


def _parent_server_info() -> dict[str, Any] | None:
    parent = os.environ.get("JPY_PARENT_PID")
    if not parent:
        return None
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None
    path = Path(jupyter_runtime_dir()) / f"jpserver-{parent}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
