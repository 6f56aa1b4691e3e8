"""`PollWidget` against a real standalone server: one vote per person under their own
`~<userId>/` key, live counts for everyone, voters shown only when the poll says so."""

from __future__ import annotations

import pytest

from nyo_realtime_ext.client import RequestError, ThreadedClient
from nyo_realtime_ext.poll import PollWidget, vote_key

from .support.standalone_server import StandaloneServer
from .support.tokens import make_token


def test_votes_count_live_for_everyone_and_nobody_votes_for_another(
    server: StandaloneServer,
) -> None:
    ada = ThreadedClient(server.url, make_token("ada"))
    bob = ThreadedClient(server.url, make_token("bob"))
    try:
        mine = PollWidget("class:1", "Tabs or spaces?", ["tabs", "spaces"], client=ada)
        # A second opener gets the poll that is there, not its own.
        theirs = PollWidget("class:1", "Something else?", ["x"], client=bob)
        assert (theirs.question, theirs.options) == ("Tabs or spaces?", ["tabs", "spaces"])
        mine.vote("tabs")
        theirs.vote("tabs")
        theirs.state.wait_for(lambda s: len([k for k in s if k.startswith("~")]) == 2)
        mine.state.wait_for(lambda s: len([k for k in s if k.startswith("~")]) == 2)
        assert mine.counts == theirs.counts == {"tabs": 2, "spaces": 0}
        assert mine.voters == {}  # the poll does not show voters
        assert "tabs: 2" in mine._buttons.children[0].description
        theirs.vote("spaces")  # a second vote replaces the first
        mine.state.wait_for(lambda s: s.get(vote_key("bob", "poll")) == "spaces")
        assert mine.counts == {"tabs": 1, "spaces": 1} and theirs.my_vote == "spaces"
        theirs.withdraw()
        mine.state.wait_for(lambda s: vote_key("bob", "poll") not in s)
        assert mine.counts == {"tabs": 1, "spaces": 0}
        # Nobody writes another's vote: the server refuses it, and nothing changes.
        with pytest.raises(RequestError) as forged:
            bob.shared_state("class:1").set(vote_key("ada", "poll"), "spaces")
        assert forged.value.code == "forbidden"
        assert mine.counts == {"tabs": 1, "spaces": 0}
        with pytest.raises(ValueError):
            mine.vote("neither")
    finally:
        ada.close()
        bob.close()


def test_voters_are_shown_only_when_the_poll_says_so(server: StandaloneServer) -> None:
    ada = ThreadedClient(server.url, make_token("ada"))
    bob = ThreadedClient(server.url, make_token("bob"))
    try:
        mine = PollWidget("class:2", "Lunch?", ["now", "later"], show_voters=True, client=ada)
        theirs = PollWidget("class:2", "Lunch?", ["now", "later"], client=bob)
        assert theirs.show_voters  # the poll's own setting, whoever shows it
        theirs.vote("later")
        mine.state.wait_for(lambda s: s.get(vote_key("bob", "poll")) == "later")
        assert mine.voters == {"now": [], "later": ["bob"]}
        assert "(bob)" in mine._buttons.children[1].description
    finally:
        ada.close()
        bob.close()
