"""What a ChatWidget shows of a message (chat_render): the panel's rendering, in Python."""

from __future__ import annotations

import pytest

from nyo_realtime_ext.chat_render import render_chat_text


@pytest.mark.parametrize(
    "text",
    [
        "<script>window.pwned = 1</script> after",
        "<SCRIPT type='text/javascript'>window.pwned = 1</SCRIPT > after",
        "<style>body { display: none }</style> after",
        "<textarea>window.pwned = 1</textarea> after",
        "<noscript>window.pwned = 1</noscript> after",
    ],
)
def test_a_script_or_style_goes_with_its_content_as_in_the_panel(text: str) -> None:
    rendered = render_chat_text(text)
    assert "after" in rendered
    assert "pwned" not in rendered and "display" not in rendered
    assert "<script" not in rendered.lower() and "<style" not in rendered.lower()


def test_an_unclosed_script_hides_the_rest_as_a_browser_would() -> None:
    assert "pwned" not in render_chat_text("before <script>window.pwned = 1")


def test_a_script_in_code_is_code_and_shows() -> None:
    rendered = render_chat_text("`<script>window.shown = 1</script>`")
    assert "&lt;script&gt;window.shown = 1&lt;/script&gt;" in rendered
    fenced = render_chat_text("```html\n<script>window.shown = 2</script>\n```")
    assert "&lt;script&gt;window.shown = 2&lt;/script&gt;" in fenced
