"""The server as a Python library: made in code, with hooks, publishing from code.

```python
from nyo_realtime_ext import create_server

server = create_server(port=3001, path="/ws", jwt_secret=SECRET, on_connect=greet)
server.start()                      # blocks; SIGINT/SIGTERM stop it (1001 to clients)
# or, inside a running asyncio loop:
await server.serve()                # until `server.stop()` or `await server.close()`
await server.publish("news", "headline", {"text": "..."})   # `from` is null
```

Under Jupyter the extension's own `RealtimeServer` (which does not listen: Jupyter
does) is in the tornado settings as `nyo_realtime`, for other server extensions:
`serverapp.web_app.settings["nyo_realtime"].publish(...)`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from .config import Realtime
from .hooks import HOOK_NAMES
from .models import ChannelKey
from .protocol import is_valid_channel
from .service import RealtimeService

log = logging.getLogger(__name__)


class RealtimeServer:
    """One realtime service: publish and read from code; standalone, listen too."""

    def __init__(
        self,
        config: Realtime,
        host: str = "127.0.0.1",
        port: int = 3001,
        service: RealtimeService | None = None,
        trust_proxy_headers: bool = False,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port  # 0 picks a free one; `port` tells which once listening
        self.trust_proxy_headers = trust_proxy_headers
        self.service = service if service is not None else RealtimeService(config)
        # Told the port once listening (`nyo-realtime serve` prints it).
        self.on_listening: Callable[[int], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None

    # -- from application code ---------------------------------------------------

    async def publish(
        self, channel: str, event: str, payload: Any = None, tenant: str | None = None
    ) -> str:
        """Publish as the server (`from: null`) to `channel` of `tenant` (default:
        `default_tenant`); returns the message id. Raises ValueError for a bad name."""
        message_id = await self.service.hub.publish_from_server(
            self._key(channel, tenant), event, payload
        )
        self.service.writer.commit_now()  # the caller may show it at once
        return message_id

    async def set_state(
        self, channel: str, key: str, value: Any, tenant: str | None = None
    ) -> dict[str, Any]:
        """Set one key of `channel`'s shared state as the server (`from: null`; None
        deletes it); returns the entry. The limits hold; rights are not asked."""
        entry = await self.service.hub.set_state_from_server(self._key(channel, tenant), key, value)
        self.service.writer.commit_now()
        return entry.to_wire()

    async def state(self, channel: str, tenant: str | None = None) -> dict[str, Any]:
        """`channel`'s shared state, key -> value (empty for a channel without any)."""
        key = self._key(channel, tenant)
        if await self.service.hub.find_channel(key) is None:
            return {}
        snapshot = await self.service.hub.state.read(key)
        return {entry.key: entry.value for entry in snapshot.entries}

    async def members(self, channel: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Who is on `channel` now, on every node, as the wire's member objects."""
        return [m.to_wire() for m in await self.service.hub.members_of(self._key(channel, tenant))]

    def _key(self, channel: str, tenant: str | None) -> ChannelKey:
        if not is_valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        return ChannelKey(tenant if tenant is not None else self.config.default_tenant, channel)

    # -- listening (standalone) -----------------------------------------------------

    async def serve(self) -> None:
        """Listen and serve until `stop()` or `close()`; call inside a running loop."""
        from .standalone import listen  # tornado's server; Jupyter has its own

        self._loop = asyncio.get_running_loop()
        self._stopping, self._closed = asyncio.Event(), asyncio.Event()
        try:
            http_server, self.port = listen(
                self.service, self.host, self.port, self.trust_proxy_headers, log
            )
            try:
                await self.service.start()
                log.info(
                    "nyo-realtime listening on ws://%s:%d%s", self.host, self.port, self.config.path
                )
                if self.on_listening is not None:
                    self.on_listening(self.port)
                await self._stopping.wait()
            finally:  # stopped, cancelled or failed: the port is freed, clients get 1001
                http_server.stop()
                await self.service.stop()
                await asyncio.sleep(SHUTDOWN_GRACE)
        finally:
            self.service.release()
            self._closed.set()

    def start(self) -> None:
        """Serve in a new event loop until SIGINT or SIGTERM (or `stop()`)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop)
            await self.serve()

        asyncio.run(main())

    def stop(self) -> None:
        """Ask a serving server to shut down (clients get 1001); safe from any thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def close(self) -> None:
        """Shut down and wait until the server has."""
        self.stop()
        if self._closed is not None:
            await self._closed.wait()


# Seconds given to close frames to reach clients before the store closes.
SHUTDOWN_GRACE = 1.0


def create_server(
    port: int = 3001,
    path: str = "/ws",
    host: str = "127.0.0.1",
    verify_token: Any = None,
    on_connect: Any = None,
    on_disconnect: Any = None,
    on_subscribe: Any = None,
    on_publish: Any = None,
    **options: Any,
) -> RealtimeServer:
    """A standalone server, not started yet. Hooks are callables or import strings,
    sync or async (see `hooks.py`); `options` are any `Realtime` settings
    (`jwt_secret=...`, `db_path=...`, `redis_url=...`). Like `nyo-realtime serve`,
    it refuses to exist without a way to verify tokens."""
    hooks = dict(
        zip(HOOK_NAMES, (on_connect, on_disconnect, on_subscribe, on_publish), strict=True)
    )
    settings = {name: hook for name, hook in hooks.items() if hook is not None}
    if verify_token is not None:
        settings["verify_token"] = verify_token
    config = Realtime(path=path, **settings, **options)
    server = RealtimeServer(config, host, port)
    if not server.service.authenticator.can_verify:
        server.service.release()
        raise ValueError(
            "no way to verify tokens: give jwt_secret, jwt_public_key (with jwt_algorithms) "
            "or verify_token"
        )
    return server
