"""Jupyter's anonymous users for the browser tests' servers, never two with one name.

Jupyter names each token login after a moon drawn at random, so two people of one
test are "Anonymous Io" now and then (about one test in 50). Such names collide,
and the lab rightly shows them with their ids ("Anonymous Io (@3f2a…)"), which the
tests' exact texts do not expect. Here each login takes the next moon of a shuffled
deck instead: what a person is called still varies from run to run.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.utils import moons_of_jupyter  # type: ignore[attr-defined]

_deck = random.sample(moons_of_jupyter, len(moons_of_jupyter))


class DistinctAnonymous(IdentityProvider):
    def generate_anonymous_user(self, handler: Any) -> User:
        moon = _deck.pop() if _deck else uuid.uuid4().hex[:6]
        name = f"Anonymous {moon}"
        return User(uuid.uuid4().hex, name, name, f"A{moon[0]}", None, None)
