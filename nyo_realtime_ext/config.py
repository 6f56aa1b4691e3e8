"""The one configuration object, read by the Jupyter extension and the standalone server.

Every knob lives here so that ``--Realtime.x=...`` on the command line and
``c.Realtime.x = ...`` in a config file work the same way in both modes.
Durations are in seconds; the wire reports milliseconds (docs/protocol.md).
"""

from __future__ import annotations

from traitlets import Any, Dict, Enum, Float, Int, List, Unicode, Union
from traitlets.config import Configurable


class Realtime(Configurable):
    """Realtime channels, presence and chat."""

    path = Unicode("/ws", help="URL path of the WebSocket endpoint (standalone server).").tag(
        config=True
    )
    heartbeat_interval = Float(30.0, help="Seconds between two sweeps for silent connections.").tag(
        config=True
    )
    heartbeat_timeout = Float(
        60.0, help="Seconds of silence after which a connection is closed with 4408."
    ).tag(config=True)
    max_payload_size = Int(
        1024 * 1024, help="Largest frame or HTTP body, in bytes; a larger frame closes with 1009."
    ).tag(config=True)
    auth_timeout = Float(
        10.0, help="Seconds a connection may stay unauthenticated before it is closed with 4401."
    ).tag(config=True)

    jwt_secret = Unicode("", help="Shared secret for HMAC-signed JWTs (HS256/384/512).").tag(
        config=True
    )
    jwt_public_key = Unicode(
        "", help="PEM public key for asymmetrically signed JWTs (RS*, ES*, PS*, EdDSA)."
    ).tag(config=True)
    jwt_algorithms = List(
        Unicode(),
        default_value=["HS256"],
        help="JWT algorithms accepted; anything else (and 'none') is refused.",
    ).tag(config=True)
    jwt_audience = Unicode("", help="Required `aud` claim, if set.").tag(config=True)
    jwt_issuer = Unicode("", help="Required `iss` claim, if set.").tag(config=True)
    verify_token = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help=(
            "Callable or import string 'module:function' taking a token and returning "
            "an identity dict (userId, tenantId, name, ...) or None; replaces JWT checking."
        ),
    ).tag(config=True)
    authorize = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help=(
            "Callable or import string 'module:function' (identity, channel, action) -> bool, "
            "consulted for private channels after the member list and the `channels` claim: "
            "exactly True allows; anything else, or an exception, refuses."
        ),
    ).tag(config=True)

    on_connect = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help="Hook (callable or 'module:function', sync or async) on_connect(client), told "
        "when a connection has authenticated.",
    ).tag(config=True)
    on_disconnect = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help="Hook on_disconnect(client, code), told when an authenticated connection ends.",
    ).tag(config=True)
    on_subscribe = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help="Hook on_subscribe(client, channel), asked for every way to read a channel or "
        "be present on it (WebSocket and HTTP); True or None allows, False refuses with "
        "`forbidden`, anything else fails closed (`internal`).",
    ).tag(config=True)
    on_publish = Union(
        [Unicode(), Any()],
        default_value=None,
        allow_none=True,
        help="Hook on_publish(client, channel, event, payload); True or None allows, False "
        "refuses with `forbidden`, anything else fails closed (`internal`).",
    ).tag(config=True)
    hook_timeout = Float(
        5.0, help="Seconds an async hook may take before it counts as failed (`internal`)."
    ).tag(config=True)
    default_channel_type = Enum(
        ["public", "private", "presence"],
        "presence",
        help="Type of a new channel whose name has no private-/presence- prefix.",
    ).tag(config=True)
    default_tenant = Unicode(
        "default", help="Tenant of users whose token or identity names none."
    ).tag(config=True)
    kernel_user = Unicode(
        "",
        help=(
            "User id that kernels started by this Jupyter server connect as (`connect()` "
            "with no arguments). Default: JupyterHub's user ($JUPYTERHUB_USER), else the OS user."
        ),
    ).tag(config=True)
    kernel_user_name = Unicode(
        "",
        help="Display name for `kernel_user`. Default: the OS account's full name, else the user id.",
    ).tag(config=True)
    document_scope = Unicode(
        None,
        allow_none=True,
        help=(
            "Which files the JupyterLab extension's document presence is about. Default "
            "(None): this server's own, named by its user (JupyterHub's $JUPYTERHUB_USER and "
            "server name, else `kernel_user`), so two users' `Untitled.ipynb` on JupyterHub "
            "never merge. '' when every server shares one filesystem; any other string is "
            "a scope that servers configured alike share."
        ),
    ).tag(config=True)
    document_readers = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        default_value={},
        help=(
            "Who else may use the document channels of a scope (`presence-doc@<scope>:`), "
            "as {scope: [user ids]}: by default only the scope's user (`ada` for `ada` and "
            "`ada/<server>`) and whoever this server admits, for its own scope "
            "(documents.py)."
        ),
    ).tag(config=True)
    history_size = Int(100, help="Messages kept per channel.").tag(config=True)
    history_ttl = Float(24 * 3600.0, help="Seconds a message is kept in history.").tag(config=True)
    db_path = Unicode(
        ".nyo-realtime.db",
        help="SQLite file for channels, members, messages and presence; ':memory:' keeps nothing.",
    ).tag(config=True)
    max_channels_per_user = Int(
        1000,
        help=(
            "Channels one user may make exist in a tenant (by a first subscribe or publish, or "
            "over HTTP); the next creation is refused with `limit_exceeded`. 0 turns it off."
        ),
    ).tag(config=True)
    max_channel_members = Int(
        1000,
        help="Longest member list of a channel (HTTP create or PATCH); longer is `limit_exceeded`.",
    ).tag(config=True)
    max_state_keys = Int(
        1000,
        help=(
            "Keys of shared state one channel holds (`state:set`, HTTP `PUT .../state/{key}`); "
            "a write of one more key is `limit_exceeded`. Deleted keys do not count."
        ),
    ).tag(config=True)
    max_state_value_size = Int(
        64 * 1024,
        help="Bytes of one shared-state value, encoded as JSON; more is `payload_too_large`.",
    ).tag(config=True)
    max_state_bytes = Int(
        1024 * 1024,
        help=(
            "Bytes of shared state one channel holds (each key's UTF-8 bytes plus its "
            "value's encoded bytes); a write past it is `limit_exceeded`. This also bounds "
            "the `state` snapshot a subscriber gets."
        ),
    ).tag(config=True)
    channel_idle_ttl = Float(
        30 * 24 * 3600.0,
        help=(
            "Seconds after which a channel made by a first subscribe or publish (no owner), "
            "with no message and nobody present since, is forgotten with its history and "
            "presence records; so are offline presence records that old. 0 keeps everything."
        ),
    ).tag(config=True)
    redis_url = Unicode(
        "",
        help=(
            "Redis to share channels, history and presence with other nodes, e.g. "
            "redis://host:6379/0, a Redis Cluster (redis+cluster://host:port,host:port,...) "
            "or the master Sentinel names (redis+sentinel://host:port,.../service); empty "
            "runs the embedded engine (SQLite at `db_path`)."
        ),
    ).tag(config=True)
    redis_prefix = Unicode(
        "nyo-realtime",
        help="Prefix of every Redis key and pub/sub channel, so deployments can share one Redis.",
    ).tag(config=True)
    redis_max_connections = Int(
        200,
        help=(
            "Redis connections one process uses for its commands (it opens two more: the "
            "pub/sub listener and the scan of idle channels). When all are busy a command "
            "waits its turn, up to 10 s, then its client is answered `unavailable` (busy). "
            "Redis is single-threaded, so a few hundred serve `max_connections` clients "
            "reconnecting at once; keep (this + 2) x processes below Redis's `maxclients`."
        ),
    ).tag(config=True)
    max_subscriptions = Int(1000, help="Channels one connection may be subscribed to at once.").tag(
        config=True
    )
    rate_limit = Float(
        200.0,
        help=(
            "Frames per second and HTTP API requests per second one user may send, all their"
            " connections together (bursts up to twice that); 0 turns it off."
        ),
    ).tag(config=True)
    max_chat_length = Int(
        16 * 1024,
        help=(
            'Characters of a chat message (event `chat:message`, payload `{"text"}`), '
            "over WebSocket and HTTP; a longer one is refused with `payload_too_large`. "
            "Every reader renders chat as Markdown, so it has a bound of its own, below "
            "`max_payload_size`."
        ),
    ).tag(config=True)
    profile_changes_per_minute = Float(
        6.0,
        help=(
            "Profile changes (`PUT profile` with a name or colour) one user may make per "
            "minute, bursts up to twice that; each is shown on every presence channel the "
            "user is on, so one change can cost a frame per channel per watcher. Past it: "
            "429 with `Retry-After`. 0 turns it off."
        ),
    ).tag(config=True)
    replay_rate = Float(
        1024.0 * 1024,
        help=(
            "Bytes of history per second one user may have sent back to them, all their "
            "connections and HTTP reads together (bursts up to twice that): recoveries "
            "after a reconnect and history reads. A recovery past it is cut short, and "
            "the client learns `recovered: false`; a history read past it is a 429 with "
            "`Retry-After`. So asking for the same history again and again costs the "
            "asker, not the server. 0 turns it off."
        ),
    ).tag(config=True)
    max_send_buffer = Int(
        8 * 1024 * 1024,
        help="Bytes queued for one client that does not read before it is cut with 4429.",
    ).tag(config=True)
    write_delay = Float(
        0.0,
        help=(
            "Seconds a burst of outgoing frames waits before it is written, so that a busy "
            "server writes to each client less often. 0 (the default) writes as soon as the "
            "event loop has handled what it read: nothing waits at low load. Above 0 every "
            "frame, acks included, waits up to this long; a client's frames past 256 KiB go "
            "out at once."
        ),
    ).tag(config=True)
    max_connections = Int(
        10000,
        help=(
            "Authenticated WebSocket connections this process holds at once (those that "
            "bring a token or Jupyter's login to the handshake count from the start); "
            "beyond it a handshake is answered 503 (error `limit_exceeded`) before the "
            "upgrade, and an `auth` frame gets `limit_exceeded` and close 4429. Connections "
            "waiting to authenticate have an allowance of their own "
            "(`max_unauthenticated_connections`). The standalone server raises its "
            "open-file limit for both at start. 0 turns it off."
        ),
    ).tag(config=True)
    max_unauthenticated_connections = Int(
        1000,
        help=(
            "WebSocket connections this process holds at once that came without "
            "credentials and have not sent their `auth` frame yet (each for at most "
            "`auth_timeout`); apart from `max_connections`, so that they never take an "
            "authenticated client's place. Beyond it a handshake without credentials is "
            "answered 503 (error `limit_exceeded`) before the upgrade. 0 turns it off."
        ),
    ).tag(config=True)
    max_unauthenticated_per_address = Int(
        50,
        help=(
            "Of those, the most from one client address (behind a reverse proxy, set "
            "`ServeApp.trust_proxy_headers` so that the address is the client's); beyond "
            "it a handshake without credentials is answered 429 (error `limit_exceeded`) "
            "before the upgrade. Handshakes with a token are never counted here. 0 turns "
            "it off."
        ),
    ).tag(config=True)
    max_connections_per_user = Int(
        100,
        help=(
            "WebSocket connections one user (of one tenant) holds at once on this process; "
            "the next is sent an `error` `limit_exceeded` once it authenticates, then closed "
            "with 4429. 0 turns it off."
        ),
    ).tag(config=True)
    max_long_polls_per_user = Int(
        20,
        help=(
            "HTTP long-polls (`GET .../messages?wait=`) one user (of one tenant) may have "
            "held at once on this process; the next one that would wait is answered 429 "
            "(error `limit_exceeded`, `Retry-After: 5`) at once. A long-poll answered "
            "without waiting is not counted. The process holds at most 1024 in all (then "
            "503 `unavailable`), the share of the open-file reserve kept for them. "
            "0 turns the per-user cap off."
        ),
    ).tag(config=True)
    allowed_origins = List(
        Unicode(),
        default_value=[],
        help=(
            "Standalone server: browser origins (scheme://host[:port]) besides its own that "
            "may open the WebSocket and call the HTTP API (CORS); '*' allows any. Under "
            "Jupyter, Jupyter's own origin settings apply instead."
        ),
    ).tag(config=True)
