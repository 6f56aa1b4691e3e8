"""`nyo-realtime serve`: the realtime service on its own, without Jupyter."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from typing import Any

import tornado.web
from traitlets import Bool, Int, Unicode
from traitlets.config import Application

from .api import api_routes
from .config import Realtime
from .handlers import RealtimeSocket
from .service import RealtimeService
from .store import StoreInUse

# Seconds given to close frames to reach clients before the process exits.
SHUTDOWN_GRACE = 1.0


# Bodies over max_payload_size get a JSON 413 from the API; this much more is
# read to say so, and anything larger is refused before it is buffered.
BODY_SLACK = 64 * 1024
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Blank any `?token=` in tornado's log lines (access, errors): tokens are credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN_IN_QUERY.sub(r"\1[secret]", message), None
        return True


def make_app(service: RealtimeService) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (service.config.path, RealtimeSocket, {"service": service}),
            *api_routes("/api/", service),
        ]
    )


class ServeApp(Application):
    name = "nyo-realtime serve"
    description = "Run the nyo-realtime WebSocket server on its own."
    classes = [Realtime]

    host = Unicode("127.0.0.1", help="Interface to listen on.").tag(config=True)
    port = Int(3001, help="Port to listen on.").tag(config=True)
    trust_proxy_headers = Bool(
        False, help="Take the client's address from X-Forwarded-For / X-Real-Ip (behind a proxy)."
    ).tag(config=True)

    aliases = {
        "host": "ServeApp.host",
        "port": "ServeApp.port",
        "path": "Realtime.path",
        "jwt-secret": "Realtime.jwt_secret",
        "jwt-public-key": "Realtime.jwt_public_key",
        "db": "Realtime.db_path",
        "redis": "Realtime.redis_url",
        "heartbeat-interval": "Realtime.heartbeat_interval",
        "heartbeat-timeout": "Realtime.heartbeat_timeout",
        "max-payload-size": "Realtime.max_payload_size",
        "log-level": "Application.log_level",
    }

    def start(self) -> None:
        config = Realtime(parent=self)
        try:
            service = RealtimeService(config)
        except StoreInUse as exc:
            self.exit(f"nyo-realtime: {exc}")
        if not service.authenticator.can_verify:
            service.close_store()
            self.exit(
                "nyo-realtime: no way to verify tokens. Give one with --jwt-secret SECRET, "
                "--jwt-public-key PEM (with --Realtime.jwt_algorithms), or --Realtime.verify_token=module:function."
            )
        asyncio.run(self._serve(service))

    async def _serve(self, service: RealtimeService) -> None:
        for name in ("tornado.access", "tornado.application", "tornado.general"):
            logging.getLogger(name).addFilter(RedactTokens())
        server = make_app(service).listen(
            self.port,
            self.host,
            xheaders=self.trust_proxy_headers,
            max_body_size=service.config.max_payload_size + BODY_SLACK,
        )
        await service.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        self.log.info(
            "nyo-realtime listening on ws://%s:%d%s", self.host, self.port, service.config.path
        )
        print(
            f"nyo-realtime listening on ws://{self.host}:{self.port}{service.config.path}",
            flush=True,
        )
        await stopping.wait()
        server.stop()
        await service.stop()
        await asyncio.sleep(SHUTDOWN_GRACE)
        service.close_store()


class NyoRealtimeApp(Application):
    name = "nyo-realtime"
    description = "Realtime channels, presence and chat for Jupyter."
    subcommands: dict[str, Any] = {
        "serve": (ServeApp, ServeApp.description),
    }

    def start(self) -> None:
        if self.subapp is None:
            self.print_help()
            self.exit("nyo-realtime: give a subcommand, e.g. `nyo-realtime serve`")
        self.subapp.start()


def main() -> None:
    NyoRealtimeApp.launch_instance()


if __name__ == "__main__":
    main()
