"""A chat message as the `ChatWidget` shows it: the same as the JupyterLab panel
(labextension/src/chatText.ts), in Python.

- Markdown (CommonMark with tables and strikethrough, through mistune), then
  sanitised (bleach, an allowlist: nothing that runs, no event handlers, no
  `javascript:` links; a `<script>` or `<style>` goes with its content), as
  JupyterLab's renderer does for untrusted Markdown;
- a newline is a line break, as in the panel;
- at most `MAX_MARKDOWN_LENGTH` characters go through the Markdown parser: a
  longer message (a hostile `*a*a*a…` takes a parser seconds to minutes) shows
  as plain text, collapsed;
- no image from another site: it would tell a third party who reads the chat
  and when. It shows as a link to it; relative and `data:image/` images show.

mistune and bleach come with nbconvert, which jupyter-server depends on.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import bleach
import mistune
from bleach.css_sanitizer import CSSSanitizer
from bleach.html5lib_shim import Filter

__all__ = ["MAX_MARKDOWN_LENGTH", "chat_markdown", "render_chat_text"]

MAX_MARKDOWN_LENGTH = 16 * 1024

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

_markdown = mistune.create_markdown(escape=False, plugins=["strikethrough", "table"])

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1",
    "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead",
    "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": ["href", "title", "class", "target", "rel"],
    "img": ["src", "alt", "title", "width", "height"],
    "code": ["class"],
    "td": ["align"],
    "th": ["align"],
    "ol": ["start"],
}


def chat_markdown(text: str) -> str:
    """Markdown in which each newline is a line break (fenced code as it is)."""
    lines = re.split(r"\r\n|\r|\n", text)
    fence: str | None = None
    out = []
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        marker = match.group(1) if match else None
        if fence is not None:
            if marker and marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            out.append(line)
            continue
        if marker:
            fence = marker
            out.append(line)
            continue
        following = lines[index + 1] if index + 1 < len(lines) else None
        if (
            following is None
            or not line.strip()
            or not following.strip()
            or line.endswith(("  ", "\\"))
        ):
            out.append(line)
        else:
            out.append(line + "  ")
    return "\n".join(out)


def is_local_url(url: str) -> bool:
    """Whether every reader may fetch `url`: relative to the page, or a data: image."""
    url = url.strip()
    if url.lower().startswith("data:"):
        return url.lower().startswith("data:image/")
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


class _NoRemoteImages(Filter):
    """An `<img>` from another site becomes a link to it."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img":
                attrs = token["data"]
                src = attrs.get((None, "src"), "")
                if src and not is_local_url(src):
                    alt = attrs.get((None, "alt")) or src
                    namespace = token.get("namespace")
                    yield {
                        "type": "StartTag",
                        "name": "a",
                        "namespace": namespace,
                        "data": {
                            (None, "href"): src,
                            (None, "class"): "nyo-chat-image-link",
                            (None, "target"): "_blank",
                            (None, "rel"): "noopener noreferrer",
                            (None, "title"): f"An image from another site, not loaded: {src}",
                        },
                    }
                    yield {"type": "Characters", "data": f"\N{FRAME WITH PICTURE} {alt}"}
                    yield {"type": "EndTag", "name": "a", "namespace": namespace}
                    continue
            yield token


_cleaner = bleach.Cleaner(
    tags=TAGS,
    attributes=ATTRIBUTES,
    protocols={"http", "https", "mailto", "data"},
    strip=True,
    css_sanitizer=CSSSanitizer(allowed_css_properties=[]),
    filters=[_NoRemoteImages],
)


# Elements whose content is not text to read: they go whole, content and all, as
# JupyterLab's sanitiser (sanitize-html's nonTextTags) drops them in the panel.
# Unclosed, one runs to the end, as a browser would parse it. Only what the panel
# shows is at stake here: bleach strips every tag it does not allow in any case.
_NON_TEXT = re.compile(
    r"<(script|style|textarea|option|noscript)\b[^>]*>.*?(?:</\1\s*>|$)",
    re.IGNORECASE | re.DOTALL,
)


def _safe_links(html_text: str) -> str:
    # `data:` is allowed for images only; a link to data: goes.
    return re.sub(r'<a href="data:[^"]*"', "<a", html_text)


def render_chat_text(text: str) -> str:
    """One message's text as HTML, safe to show to every reader."""
    if len(text) > MAX_MARKDOWN_LENGTH:
        return (
            '<details class="nyo-chat-long"><summary>'
            f"Long message ({round(len(text) / 1024)} KiB), as plain text</summary>"
            f'<div style="white-space:pre-wrap">{html.escape(text)}</div></details>'
        )
    rendered = _markdown(chat_markdown(text))
    assert isinstance(rendered, str)
    return _safe_links(_cleaner.clean(_NON_TEXT.sub("", rendered))).strip()
