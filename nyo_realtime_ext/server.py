"""`nyo-realtime`: the command line. `serve` runs the service on its own (see
`embed.RealtimeServer`, which it uses, and `standalone` for the transport); `db`
inspects and upgrades the embedded engine's database."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, cast

import sqlite_utils
from traitlets import Bool, Int, Unicode
from traitlets.config import Application

from .config import Realtime
from .embed import RealtimeServer
from .engines.memory import Store, StoreInUse, schema


def _log_to(app_log: logging.Logger, level: int) -> None:
    """The service's own loggers (closes, audit lines at INFO) speak through the
    application's handlers, at its `log_level`.

    That level, not the application logger's: traitlets sets its logger to DEBUG and
    filters in the handler, so every audit line and debug call of the hot path
    (one per publish) would be formatted, then thrown away."""
    package = logging.getLogger("nyo_realtime_ext")
    package.setLevel(level)
    for handler in app_log.handlers:
        if handler not in package.handlers:
            package.addHandler(handler)
    package.propagate = False


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
        _log_to(self.log, cast(int, self.log_level))  # traitlets turned a name into its number
        try:
            server = RealtimeServer(
                config, self.host, self.port, trust_proxy_headers=self.trust_proxy_headers
            )
        except (StoreInUse, schema.SchemaError) as exc:
            self.exit(f"nyo-realtime: {exc}")
        if not server.service.authenticator.can_verify:
            server.service.release()
            self.exit(
                "nyo-realtime: no way to verify tokens. Give one with --jwt-secret SECRET, "
                "--jwt-public-key PEM (with --Realtime.jwt_algorithms), or --Realtime.verify_token=module:function."
            )
        server.on_listening = lambda port: print(
            f"nyo-realtime listening on ws://{self.host}:{port}{config.path}", flush=True
        )
        server.start()


class _DbCommand(Application):
    """What `db status` and `db upgrade` share: the database, `--db` or `Realtime.db_path`."""

    classes = [Realtime]
    aliases = {"db": "Realtime.db_path", "log-level": "Application.log_level"}

    def _existing_path(self) -> str:
        path = Realtime(parent=self).db_path
        if path == ":memory:" or not os.path.isfile(path):
            self.exit(f"nyo-realtime: no database at {path} (give one with --db PATH)")
        return path


class DbStatusApp(_DbCommand):
    name = "nyo-realtime db status"
    description = (
        "Print the schema migrations applied to the database and those pending. "
        "Writes nothing; safe while a server uses the database."
    )

    def start(self) -> None:
        path = self._existing_path()
        try:
            conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
            try:
                state = schema.status(sqlite_utils.Database(conn))
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            self.exit(f"nyo-realtime: cannot read {path}: {exc}")
        recorded = f"version {state.version}" if state.applied else "no migration recorded"
        print(f"{path}: {recorded}; this nyo-realtime writes version {schema.CURRENT_VERSION}")
        print("applied:")
        for name, applied_at in state.applied:
            newer = "  (unknown here: written by a newer nyo-realtime)"
            print(f"  {name}  {applied_at}{newer if name in state.unknown else ''}")
        if not state.applied:
            print("  (none)")
        print("pending:")
        for name in state.pending:
            adopt = "  (already there, from before versioned migrations: upgrade records it)"
            print(f"  {name}{adopt if name in state.adoptable else ''}")
        if not state.pending:
            print("  (none)")
        try:
            state.refuse_if_newer(path)
        except schema.SchemaTooNew as exc:
            self.exit(f"nyo-realtime: {exc}")


class DbUpgradeApp(_DbCommand):
    name = "nyo-realtime db upgrade"
    description = (
        "Apply the pending schema migrations to the database (a server does it too when "
        "it starts). Refused while a server uses the database."
    )

    def start(self) -> None:
        path = self._existing_path()
        try:
            store = Store(path)  # what a server does when it starts, and no more
        except StoreInUse:
            self.exit(
                f"nyo-realtime: {path} is in use by a running nyo-realtime process; stop it "
                "first (a server upgrades its database itself when it starts)"
            )
        except schema.SchemaError as exc:
            self.exit(f"nyo-realtime: {exc}")
        except sqlite3.DatabaseError as exc:
            self.exit(f"nyo-realtime: cannot upgrade {path}: {exc}")
        done = store.upgraded
        store.close()
        for name in done.adopted:
            print(f"recorded {name} (already there, from before versioned migrations)")
        for name in done.applied:
            print(f"applied {name}")
        unchanged = "" if done.adopted or done.applied else " (nothing to do)"
        print(f"{path}: version {done.version}{unchanged}")


class DbApp(Application):
    name = "nyo-realtime db"
    description = "Show or upgrade the schema of the embedded engine's SQLite database."
    subcommands: dict[str, Any] = {
        "status": (DbStatusApp, "Print applied and pending migrations."),
        "upgrade": (DbUpgradeApp, "Apply pending migrations."),
    }

    def start(self) -> None:
        if self.subapp is None:
            self.print_help()
            self.exit("nyo-realtime: give a subcommand: `db status --db PATH` or `db upgrade`")
            return  # not reached: exit() raises SystemExit, though traitlets does not say so
        self.subapp.start()


class NyoRealtimeApp(Application):
    name = "nyo-realtime"
    description = "Realtime channels, presence and chat for Jupyter."
    subcommands: dict[str, Any] = {
        "serve": (ServeApp, ServeApp.description),
        "db": (DbApp, DbApp.description),
    }

    def start(self) -> None:
        if self.subapp is None:
            self.print_help()
            self.exit("nyo-realtime: give a subcommand, e.g. `nyo-realtime serve`")
            return  # not reached: exit() raises SystemExit
        self.subapp.start()


def main() -> None:
    NyoRealtimeApp.launch_instance()


if __name__ == "__main__":
    main()
