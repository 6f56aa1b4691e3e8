"""`Hub`, the one object transports talk to: the lifecycle of sessions and of the node.

It connects, authenticates, counts and closes sessions, runs the periodic sweeps,
and owns the parts that do the rest: `dispatch` (what clients send), `channels`
(what this node listens to, and what the engine tells of it), `rules` (who may),
and, as its base class, `Facade` (what the HTTP API and the application's code ask).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..audit import Audit, log_audit
from ..auth import Authenticator, AuthError
from ..engines.base import Engine, EngineUnavailable
from ..frames import encode, error, reply
from ..hooks import Client, Hooks
from ..lograte import Occasional
from ..models import ChannelKey, Identity, Profile
from ..profiles import effective
from ..protocol import PROTOCOL_VERSION, CloseCode, ErrorCode
from ..ratelimit import RateLimiter
from .admission import Admission, Slot
from .channels import Channels
from .dispatch import Dispatch, auth_error_code
from .facade import Facade
from .rules import Rules
from .session import Connection, Session, who
from .state import SharedState

log = logging.getLogger(__name__)

# A leave the engine could not take is tried again after this long, doubled (and
# jittered) per failure up to the most; and the failures are logged at most once
# in a while, with their count.
LEAVE_RETRY_MIN, LEAVE_RETRY_MAX = 0.2, 5.0


class Hub(Facade):
    """Sans-I/O: frames and identities in, encoded frames out through `Connection`."""

    def __init__(
        self,
        config: Any,
        engine: Engine,
        authenticator: Authenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine
        self.auth = authenticator
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        # Authenticated connections per (tenant, user), for `max_connections_per_user`.
        self._per_user: dict[tuple[str, str], int] = {}
        # Slots under `max_connections` and the unauthenticated allowances, reserved
        # by the transport at the handshake (`admission.admit`).
        self.admission = Admission(config)
        self.stopped = False  # after shutdown: new connections are turned away
        self.limiter = RateLimiter(config.rate_limit)
        # Bytes of history sent back per user (`replay_rate`): recoveries and history reads.
        self.replays = RateLimiter(config.replay_rate)
        # Profile changes per user: each fans out to every presence channel of theirs.
        per_minute = config.profile_changes_per_minute
        self.renames = RateLimiter(per_minute / 60, burst=2 * per_minute)
        self.hooks = Hooks(config)
        # Facts for administrators (audit.py): log lines, or Jupyter events under Jupyter.
        self.audit: Audit = log_audit
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self._next_sweep = clock() + config.heartbeat_interval
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leave_retries = Occasional(
            log, "%d presence leave(s) could not reach the engine (%s); retrying with backoff"
        )
        self.rules = Rules(self)
        self.channels = Channels(self)
        self.state = SharedState(self)
        self.dispatch = Dispatch(self)
        # What transports call for each frame (`charge`: for a ping, a pong or a
        # fragment), bound once: no call in between.
        self.receive = self.dispatch.receive
        self.charge = self.dispatch.charge
        engine.bind(self.channels)  # the engine tells the channels what happens to them

    async def start(self) -> None:
        await self.engine.start()

    def connect(
        self,
        conn: Connection,
        identity: Identity | None = None,
        profile: Profile | None = None,
        slot: Slot | None = None,
    ) -> Session | None:
        """A transport opened a connection, already authenticated or not (and then
        with the user's `profile`, from `chosen_profile`), in the `slot` it reserved
        (`admission.admit`), which the session gives back when it ends.

        None when the hub has shut down: the connection is closed with 1001 (and
        the slot is still the caller's).
        """
        if self.stopped:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
            return None
        now = self.clock()
        session = Session(
            id=f"c-{self._id_prefix}{next(self._ids):x}",
            conn=conn,
            last_seen=now,
            bucket=self.limiter.bucket(now),
            auth_deadline=now + self.config.auth_timeout,
            slot=slot,
        )
        self.sessions[session.id] = session
        if identity is not None:
            self.authenticate(session, identity, None, profile)
        return session

    def reject(self, conn: Connection, exc: AuthError) -> None:
        """Credentials given at the handshake were refused."""
        conn.send(encode(error(auth_error_code(exc), str(exc))))
        conn.close(CloseCode.UNAUTHORIZED, "unauthorized")

    def disconnect(self, session: Session, code: int | None = None) -> None:
        """The connection is gone (or about to be), with close `code` if known: leave
        every channel. Idempotent.

        Nothing is delivered to it from now on; its presence ends in the
        background, in the engine (which may be a network away).
        """
        if self.sessions.pop(session.id, None) is None:
            return
        session.closed = True
        if session.slot is not None:
            session.slot.release()
        if session.identity is not None:
            user = (session.identity.tenant_id, session.identity.user_id)
            remaining = self._per_user.pop(user, 1) - 1
            if remaining > 0:
                self._per_user[user] = remaining
            self._ended(session, code)
        left = [
            key for key in list(session.subscriptions) if self.channels.unsubscribe(session, key)
        ]
        session.subscriptions.clear()
        if left and session.identity is not None:
            self.spawn(self.leave_all(left, session.identity.user_id, session.id))

    def _ended(self, session: Session, code: int | None) -> None:
        """An authenticated connection is over: the audit and the hook hear it."""
        if session.identity is None:
            return
        self.record("disconnected", session.identity, session.id, code=code)
        if self.hooks.has("on_disconnect"):
            client = Client.of(session.identity, session.id)
            self.spawn(self.hooks.notify("on_disconnect", client, code))

    async def leave_all(self, keys: list[ChannelKey], user_id: str, connection_id: str) -> None:
        now = self.clock()  # when they left, however long the engine takes to hear it
        for key in keys:
            delay = LEAVE_RETRY_MIN
            while True:
                try:
                    await self.engine.presence.leave(key, user_id, connection_id, now)
                    break
                except EngineUnavailable as exc:
                    # Never lost: tried again until the engine takes it. A node that
                    # stops meanwhile ends its connections (and a dead one's lease does).
                    if self.stopped:
                        return
                    self._leave_retries.note(exc)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(LEAVE_RETRY_MAX, delay * 2)
                except Exception:  # a bug: one failure must not strand the rest
                    log.exception("leaving %s on disconnect", key)
                    break

    def close(self, session: Session, code: int, reason: str) -> None:
        if session.closed:
            return
        if code != CloseCode.GOING_AWAY:
            log.info("closing %s (%s) with %d: %s", session.id, who(session), code, reason)
        self.disconnect(session, code)
        session.conn.close(code, reason)

    async def shutdown(self) -> None:
        """Close every connection with 1001; this node's members leave everywhere.

        Local subscribers are not told that the others leave: they all go at
        once, and telling each of N subscribers about the N-1 others would cost
        N² frames. Other nodes' subscribers are told, by the engine.
        """
        self.stopped = True
        sessions = list(self.sessions.values())
        self.sessions.clear()
        for state in self.channels.states.values():
            state.subscribers.clear()
            observers, state.observers = state.observers, []
            for observer in observers:
                observer(None)
        for session in sessions:
            session.closed = True
            if session.slot is not None:
                session.slot.release()
            session.conn.close(CloseCode.GOING_AWAY, "server shutting down")
            self._ended(session, CloseCode.GOING_AWAY)
        self._per_user.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.engine.close()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run engine work in the background, logging what fails."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background engine work failed", exc_info=task.exception())

    def authenticate(
        self, session: Session, identity: Identity, ref: Any, profile: Profile | None = None
    ) -> bool:
        """Accept `identity` for the session; False (and closed) if its user has no
        room left for one more connection.

        The session keeps `identity` as the token or Jupyter made it; `authenticated`
        shows the user with their `profile` over it. (The engine applies the
        profile to presence itself, so it is never stale there.)"""
        if session.identity is None and not self._admit(session, ref):
            return False
        if session.identity is None and not self._count_connection(session, identity, ref):
            return False
        if session.identity is None:
            self.record("connected", identity, session.id)
            if self.hooks.has("on_connect"):
                self.spawn(self.hooks.notify("on_connect", Client.of(identity, session.id)))
        session.identity = identity
        # From now on the user's one budget, shared with their other connections.
        session.bucket = self.limiter.bucket_for(
            (identity.tenant_id, identity.user_id), self.clock()
        )
        session.send(
            reply(
                "authenticated",
                ref,
                connectionId=session.id,
                user=effective(identity, profile).to_wire(),
                heartbeatInterval=int(self.config.heartbeat_interval * 1000),
                heartbeatTimeout=int(self.config.heartbeat_timeout * 1000),
                protocol=PROTOCOL_VERSION,
            )
        )
        return True

    def _admit(self, session: Session, ref: Any) -> bool:
        """Move a connection that authenticated by frame to the authenticated pool,
        if `max_connections` has room (else `limit_exceeded` and 4429)."""
        if session.slot is None or session.slot.authenticate():
            return True
        limit = self.config.max_connections
        message = f"this server holds its maximum of {limit} connections (max_connections)"
        session.send(error(ErrorCode.LIMIT_EXCEEDED, message, ref))
        self.close(session, CloseCode.TOO_MANY, "server full")
        return False

    def _count_connection(self, session: Session, identity: Identity, ref: Any) -> bool:
        """Count one more connection of the user, if `max_connections_per_user` allows."""
        user = (identity.tenant_id, identity.user_id)
        limit = self.config.max_connections_per_user
        if limit and self._per_user.get(user, 0) >= limit:
            message = f"max_connections_per_user: at most {limit} connections per user"
            session.send(error(ErrorCode.LIMIT_EXCEEDED, message, ref))
            self.close(session, CloseCode.TOO_MANY, "too many connections")
            return False
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return True

    def record(
        self, action: str, identity: Identity | None, connection_id: str | None, **fields: Any
    ) -> None:
        data = {"user": None, "connection": connection_id}
        if identity is not None:  # None: the application's own code
            data.update(user=identity.user_id, tenant=identity.tenant_id)
        try:
            self.audit(action, {**data, **fields})
        except Exception:  # an audit sink's trouble is not the client's
            log.exception("recording %s failed", action)

    def tick(self) -> None:
        """Called by the transport about once a second: auth timeouts, token expiry, heartbeat."""
        now = self.clock()
        for session in list(self.sessions.values()):
            identity = session.identity
            if identity is None and now >= session.auth_deadline:
                session.send(error(ErrorCode.UNAUTHORIZED, "authentication timed out"))
                self.close(session, CloseCode.UNAUTHORIZED, "authentication timed out")
            elif (
                identity is not None
                and identity.expires_at is not None
                and now >= identity.expires_at
            ):
                session.send(error(ErrorCode.TOKEN_EXPIRED, "token expired; send a fresh one"))
                self.close(session, CloseCode.UNAUTHORIZED, "token expired")
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.heartbeat_interval
            deadline = now - self.config.heartbeat_timeout
            for session in list(self.sessions.values()):
                if session.last_seen < deadline:
                    self.close(session, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            self.channels.evict_idle()

    async def maintain(self) -> None:
        """Periodic engine work: liveness, expired leases, dead nodes."""
        if not self.stopped:
            await self.engine.presence.maintain(self.clock())
