"""Who may do what: the rights to a channel, the application's hooks, the quotas.

Both transports ask these same checks; each raises ProtocolError with the code
the transport maps to its answer, so the two cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..constants import CHAT_EVENT
from ..documents import may_use_document
from ..hooks import Client
from ..models import ChannelKey, ChannelRecord, Identity
from ..protocol import ErrorCode, ProtocolError, check_chat

if TYPE_CHECKING:
    from .hub import Hub


class Rules:
    """The checks every request passes, whichever transport brought it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config, self.engine, self.clock = hub.config, hub.engine, hub.clock
        self.auth, self.hooks = hub.auth, hub.hooks

    async def require_publish_allowed(
        self,
        identity: Identity,
        connection_id: str | None,
        key: ChannelKey,
        event: str,
        payload: Any,
        ref: Any = None,
    ) -> None:
        refusal = self.document_refusal(identity, key.name, ref)
        if refusal is not None:
            raise refusal
        if event == CHAT_EVENT:
            check_chat(payload, self.config.max_chat_length, ref, key.name)
        if self.hooks.has("on_publish"):
            client = Client.of(identity, connection_id)
            if not await self.hooks.allows("on_publish", client, key.name, event, payload):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "refused by the application", ref, key.name
                )

    async def require_creation_quota(
        self, identity: Identity, ref: Any = None, channel: str | None = None
    ) -> None:
        quota = self.config.max_channels_per_user
        if (
            quota
            and await self.engine.channels.count_created(identity.tenant_id, identity.user_id)
            >= quota
        ):
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"max_channels_per_user: you have made {quota} channels exist already",
                ref,
                channel,
            )

    def require_member_quota(self, members: tuple[str, ...] | list[str]) -> None:
        quota = self.config.max_channel_members
        if quota and len(members) > quota:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"max_channel_members: a member list holds at most {quota} users",
            )

    async def reader_refusal(
        self, identity: Identity, channel: ChannelRecord, connection_id: str | None, ref: Any = None
    ) -> ProtocolError | None:
        """THE rule for reading a channel or being present on it, for both transports:
        None if `identity` may, else the refusal to raise.

        A WebSocket subscribe asks it, and so does every HTTP way to read a channel or
        be on it: its record, its place in the channel list, its members, its history
        and long-polls, an HTTP presence (each heartbeat too), and the creation of a
        `private-` name. First the right to subscribe (private channels: member list,
        owner, `channels` claim, `authorize`), then the application's `on_subscribe`
        (`connection_id` None over HTTP). A hook that fails, or answers anything but
        True, None or False, raises HookFailed: the request fails closed with `internal`.
        A scoped document channel is first only for those who may open its documents
        (`document_refusal`).
        """
        refusal = self.document_refusal(identity, channel.key.name, ref)
        if refusal is not None:
            return refusal
        if not self.auth.may_access(identity, channel, "subscribe"):
            return ProtocolError(
                ErrorCode.FORBIDDEN, "you may not subscribe on this channel", ref, channel.key.name
            )
        if self.hooks.has("on_subscribe"):
            client = Client.of(identity, connection_id)
            if not await self.hooks.allows("on_subscribe", client, channel.key.name):
                return ProtocolError(
                    ErrorCode.FORBIDDEN, "refused by the application", ref, channel.key.name
                )
        return None

    def document_refusal(
        self, identity: Identity, channel: str, ref: Any = None
    ) -> ProtocolError | None:
        """None unless `channel` is a scoped document channel (`presence-doc@<scope>:`)
        whose documents `identity` may not open (documents.py): then `forbidden`, for
        reading, presence and publishing alike, so nobody forges another user's run marks."""
        if may_use_document(self.config, identity.user_id, channel):
            return None
        return ProtocolError(
            ErrorCode.FORBIDDEN,
            "this document channel is for the users who may open its documents",
            ref,
            channel,
        )

    async def require_reader(
        self, identity: Identity, channel: ChannelRecord, connection_id: str | None, ref: Any = None
    ) -> None:
        """`Rules.reader_refusal`, raised: forbidden unless `identity` may read `channel`."""
        refusal = await self.reader_refusal(identity, channel, connection_id, ref)
        if refusal is not None:
            raise refusal

    def require_access(
        self, identity: Identity, channel: ChannelRecord, action: str, ref: Any = None
    ) -> None:
        if not self.auth.may_access(identity, channel, action):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"you may not {action} on this channel", ref, channel.key.name
            )
