"""`nyo_realtime_ext.link` with real kernels of a real Jupyter server: a slider linked
in two kernels moves in both, a late kernel starts from the current value, concurrent
drags converge, continuous changes are coalesced, and `unlink()` stops it."""

from __future__ import annotations

from typing import Any

from .support.kernels import converged, running_kernel
from .support.tokens import make_token

CHANNEL = "lab:linked"

LINK = (
    "import ipywidgets as w, nyo_realtime_ext as rt\n"
    "slider = w.IntSlider(value={value}, max=10_000)\n"
    "linked = rt.link(slider, {channel!r})\n"
)


async def test_a_slider_linked_in_two_kernels_moves_in_both(
    jp_fetch: Any, jp_serverapp: Any, jupyter_ws_url: str, connect: Any
) -> None:
    browser = await connect(jupyter_ws_url, make_token("watcher"))
    await browser.subscribe(CHANNEL, state=True)
    assert (await browser.expect("state"))["entries"] == []
    async with (
        running_kernel(jp_fetch, jp_serverapp) as first,
        running_kernel(jp_fetch, jp_serverapp) as second,
    ):
        await first.run(LINK.format(value=7, channel=CHANNEL))
        # The first to link puts its widget's value there.
        changed = await browser.expect("state:changed")
        assert (changed["key"], changed["value"]) == ("link/value", {"value": 7})
        await second.run(LINK.format(value=0, channel=CHANNEL))
        assert await second.value("slider.value") == 7  # a late link starts from it

        await first.run("slider.value = 42")
        await second.wait_until("slider.value == 42")
        await second.run("slider.value = 43")
        await first.wait_until("slider.value == 43")

        async with running_kernel(jp_fetch, jp_serverapp) as third:
            await third.run(LINK.format(value=1, channel=CHANNEL))
            assert await third.value("slider.value") == 43

        # Both drag at once: a few hundred changes each, coalesced, then one value
        # everywhere, the entry's last one.
        drag = "for i in range({start}, {start} + 300): slider.value = i\n"
        await first.run(drag.format(start=1000))
        await second.run(drag.format(start=5000))
        final = "not linked._dirty and not linked._sending"
        await first.wait_until(final)
        await second.wait_until(final)
        # Each hears of the other's last write in its own time: then both hold it.
        await converged([first, second], "linked.state.version('link/value')")
        await first.wait_until("slider.value == linked.state.get('link/value', {}).get('value')")
        await second.wait_until("slider.value == linked.state.get('link/value', {}).get('value')")
        ends = [await k.value("slider.value") for k in (first, second)]
        entries = [await k.value("linked.state.get('link/value')") for k in (first, second)]
        assert ends[0] == ends[1] and entries[0] == entries[1] == {"value": ends[0]}
        assert ends[0] in (1299, 5299)  # the last drag's last value won
        # Coalesced: far fewer writes than changes.
        assert await first.value("linked.writes") < 150

        # unlink: the first stops following, and stops sending.
        await first.run("linked.unlink(); slider.value = 3")
        await second.run("slider.value = 9")
        await first.run("linked.state.wait_for(lambda s: s.get('link/value') == {'value': 9})")
        assert await first.value("slider.value") == 3
        assert await first.value("linked.state.get('link/value')") == {"value": 9}
        assert await second.value("slider.value") == 9
