"""Every Redis key and pub/sub channel name of the engine, in one place.

Each name is ``<prefix>:{<part>}:<kind>``. The braces are a Redis Cluster hash
tag: only what is between them picks the slot, so every key of one channel (its
sequence, stream, presence, state, pub/sub channel) lives on one shard and a script
that touches them is one atomic step there. Nothing crosses slots in one script:

- per channel, ``{<channel part>}`` (`channel_part`): meta, hist, conns, users, gone,
  nodes, leases, pend, state, and the pub/sub channel ps;
- per tenant, ``{<tenant part>}``: channels (the records), created (the quotas),
  names (each member's name last shown, what a chosen name must not look like);
- per user of a tenant, ``{u<tenant part>:<user>}``: profile, chans (the channels the
  user entered, so that a profile change reaches each);
- per node, ``{n:<node id>}``: alive (its lease, to notice a Redis that lost it);
- per deployment, ``{deployment}``: tenants (whose channels the collection of idle
  channels walks, instead of a SCAN).

A prefix or a tenant with a brace in it still gives one slot per channel (Redis
takes the first ``{...}``, and every key of a channel starts alike); it only spreads
channels less. Scripts get every key in KEYS, in the order of the lists here.
"""

from __future__ import annotations

from ...models import ChannelKey


def channel_part(key: ChannelKey) -> str:
    """The key part of a channel: unambiguous whatever its tenant contains."""
    return f"{len(key.tenant)}:{key.tenant}:{key.name}"


def tenant_part(tenant: str) -> str:
    """As `channel_part`: a tenant's part of a key."""
    return f"{len(tenant)}:{tenant}"


class Keys:
    """Key names under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def channel(self, kind: str, key: ChannelKey) -> str:
        return f"{self.prefix}:{{{channel_part(key)}}}:{kind}"

    def tenant(self, kind: str, tenant: str) -> str:
        return f"{self.prefix}:{{{tenant_part(tenant)}}}:{kind}"

    def user(self, kind: str, tenant: str, user_id: str) -> str:
        return f"{self.prefix}:{{u{tenant_part(tenant)}:{user_id}}}:{kind}"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}:{{n:{node_id}}}:alive"

    def tenants(self) -> str:
        return f"{self.prefix}:{{deployment}}:tenants"

    # -- what each script is given, in its KEYS order ---------------------------------

    def publish(self, key: ChannelKey) -> list[str]:
        return [self.channel(k, key) for k in ("meta", "hist", "ps")]

    def history(self, key: ChannelKey) -> list[str]:
        return [self.channel(k, key) for k in ("meta", "hist")]

    def state(self, key: ChannelKey) -> list[str]:
        """state (a write): meta and hist, as publish numbers messages, then the state
        hash and the pub/sub channel."""
        return [self.channel(k, key) for k in ("meta", "hist", "state", "ps")]

    def snapshot(self, key: ChannelKey) -> list[str]:
        return [self.channel(k, key) for k in ("meta", "state")]

    def presence(self, key: ChannelKey) -> list[str]:
        """join, leave, update, renew, retire, members and reprofile: prelude.lua's
        `presence_keys` names them."""
        kinds = ("conns", "users", "gone", "nodes", "leases", "pend", "ps")
        return [self.channel(k, key) for k in kinds]

    def collect(self, key: ChannelKey) -> list[str]:
        """Everything of a channel: the presence keys, then meta, hist, state."""
        return [*self.presence(key), *(self.channel(k, key) for k in ("meta", "hist", "state"))]

    def registry(self, tenant: str) -> list[str]:
        """create and unlist: the tenant's records and quotas."""
        return [self.tenant("channels", tenant), self.tenant("created", tenant)]

    def profile(self, tenant: str, user_id: str) -> list[str]:
        """enter, profile and forget: the user's profile and channels."""
        return [self.user("profile", tenant, user_id), self.user("chans", tenant, user_id)]
