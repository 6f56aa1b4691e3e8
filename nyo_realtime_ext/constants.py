"""What the server and its Python client both know, defined once.

The client (`nyo_realtime_ext.client`, and the widgets on top of it) runs in a kernel
and the server never imports it (tests/test_layout.py checks), so anything both sides
must agree on lives here: names in the kernel's environment, URL paths, statuses.
"""

from __future__ import annotations

# Presence statuses of docs/protocol.md; a member's first one is "online".
STATUSES = ("online", "away", "busy", "offline")

# What a member is (docs/protocol.md, "kind"): a person, or a kernel acting for
# nobody in particular. Clients count only people as people; "person" is the
# default and is not written on the wire.
PERSON = "person"
KERNEL = "kernel"
KINDS = (PERSON, KERNEL)

# The event of a chat message (`{"text": ...}`), which the server bounds in size
# (`Realtime.max_chat_length`) and the panel and ChatWidget render as Markdown.
CHAT_EVENT = "chat:message"

# The environment the extension gives the kernels it starts (kernel_env.py), which
# `client.connect()` reads to find the server with no arguments.
ENV_URL = "NYO_REALTIME_URL"
ENV_TOKEN = "NYO_REALTIME_TOKEN"

# Under Jupyter, every route is below `{base_url}nyo-realtime/`.
URL_PREFIX = "nyo-realtime"
WS_PATH = f"{URL_PREFIX}/ws"
API_PATH = f"{URL_PREFIX}/api/"
# What the JupyterLab extension asks of the server (its document scope).
SETTINGS_PATH = f"{URL_PREFIX}/settings"

# `nyo-realtime serve`: the API's root (its WebSocket path is `Realtime.path`).
STANDALONE_API_PATH = "/api/"
