"""nyo-realtime: realtime channels, presence and chat for Jupyter."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


# The widgets import ipywidgets, which the server never needs: they load on
# first use (PEP 562), so `import nyo_realtime_ext` stays light for the server.
_LAZY = {
    "PresenceWidget": "widgets",
    "ChatWidget": "widgets",
    "PollWidget": "poll",
    "link": "linking",
    "Link": "linking",
    "connect": "client",
    "RealtimeClient": "client",
    "ThreadedClient": "client",
    "use_realtime_channel": "client",
    "create_server": "embed",
    "RealtimeServer": "embed",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import RealtimeExtension

    return [{"module": "nyo_realtime_ext", "app": RealtimeExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Where `jupyter labextension develop` finds the built front end; a wheel
    # installs the same files under share/jupyter/labextensions/ instead.
    return [{"src": "labextension", "dest": "nyo-realtime-ext"}]
