"""nyo-realtime: realtime channels, presence and chat for Jupyter."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import RealtimeExtension

    return [{"module": "nyo_realtime_ext", "app": RealtimeExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Where `jupyter labextension develop` finds the built front end; a wheel
    # installs the same files under share/jupyter/labextensions/ instead.
    return [{"src": "labextension", "dest": "nyo-realtime-ext"}]
