"""Shared state: who may write which key, the limits, and the outcomes, for both transports.

A `state:set` frame, an HTTP `PUT`/`DELETE channels/{name}/state/{key}` and the
application's own code all write through `SharedState.write`, so the rules cannot
differ between them:

- writing needs the right to publish (private channels, tenants, `on_publish`, asked
  with the event `state:set` and the payload `{"key", "value"}`); reading the right
  to subscribe (`Rules.reader_refusal`, as for messages);
- a key `~<userId>/...` is written only by that user: a vote nobody can forge;
- a value is at most `max_state_value_size` bytes (`payload_too_large`); a channel
  holds at most `max_state_keys` keys and `max_state_bytes` bytes (`limit_exceeded`);
- a stale `ifVersion` is a `conflict` that carries the entry as it is.

Every refusal is decided before anything is stored or numbered: nothing changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engines.base import StateConflict, StateLimitExceeded, StateLimits, StateSnapshot
from ..frames import state_entry_wire
from ..hooks import Client
from ..models import ChannelKey, ChannelRecord, Identity, StateEntry
from ..protocol import USER_KEY_PREFIX, ErrorCode, ProtocolError, encode_value

if TYPE_CHECKING:
    from .hub import Hub

# The `event` the application's `on_publish` hook is asked with for a state write.
STATE_SET_EVENT = "state:set"


class SharedState:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config, self.engine, self.clock = hub.config, hub.engine, hub.clock

    @property
    def limits(self) -> StateLimits:
        return StateLimits(self.config.max_state_keys, self.config.max_state_bytes)

    async def require_writer(
        self,
        identity: Identity,
        connection_id: str | None,
        channel: ChannelRecord,
        entry_key: str,
        value: Any,
        ref: Any = None,
    ) -> None:
        """Forbidden unless `identity` may write `entry_key` of `channel` as `value`:
        the publish right, the key's owner for `~<userId>/` keys, `on_publish`."""
        name = channel.key.name
        self.hub.rules.require_access(identity, channel, "publish", ref)
        if entry_key.startswith(USER_KEY_PREFIX) and not entry_key.startswith(
            f"{USER_KEY_PREFIX}{identity.user_id}/"
        ):
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"keys `~<userId>/...` are written only by that user; yours start with "
                f"`~{identity.user_id}/`",
                ref,
                name,
            )
        hooks = self.hub.hooks
        if hooks.has("on_publish"):
            client = Client.of(identity, connection_id)
            payload = {"key": entry_key, "value": value}
            if not await hooks.allows("on_publish", client, name, STATE_SET_EVENT, payload):
                raise ProtocolError(ErrorCode.FORBIDDEN, "refused by the application", ref, name)

    def check_value(self, value: Any, ref: Any = None, channel: str | None = None) -> None:
        if value is None:
            return
        size = len(encode_value(value, "value", ref, channel))
        limit = self.config.max_state_value_size
        if size > limit:
            raise ProtocolError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"max_state_value_size: a value encodes to at most {limit} bytes (this one: "
                f"{size})",
                ref,
                channel,
            )

    async def write(
        self,
        key: ChannelKey,
        entry_key: str,
        value: Any,
        sender: dict[str, Any] | None,
        if_version: str | None,
        ref: Any = None,
    ) -> StateEntry:
        """Store and broadcast the write (the caller has checked the writer); the entry."""
        self.check_value(value, ref, key.name)
        try:
            return await self.engine.state.write(
                key, entry_key, value, sender, self.clock(), if_version, self.limits
            )
        except StateConflict as exc:
            current = exc.current
            raise ProtocolError(
                ErrorCode.CONFLICT,
                "`ifVersion` is not the entry's version: nothing changed"
                if if_version
                else "the key exists already: nothing changed",
                ref,
                key.name,
                {"entry": state_entry_wire(current) if current is not None else None},
            ) from None
        except StateLimitExceeded as exc:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED, _LIMIT_MESSAGES[exc.setting](self.config), ref, key.name
            ) from None

    async def read(self, key: ChannelKey, since: str | None = None) -> StateSnapshot:
        return await self.engine.state.read(key, since)


_LIMIT_MESSAGES = {
    "max_state_keys": lambda config: (
        f"max_state_keys: a channel holds at most {config.max_state_keys} keys of state"
    ),
    "max_state_bytes": lambda config: (
        f"max_state_bytes: a channel holds at most {config.max_state_bytes} bytes of state"
    ),
}
