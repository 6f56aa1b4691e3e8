"""Kernels started by the real Jupyter test server, driven with `jupyter_client`.

The kernel is created through the server's REST API (as JupyterLab does) and
then reached on its connection file, so it inherits exactly the environment the
server gives its kernels. Everything here is async: the Jupyter server runs on
the test's own event loop, and a blocking call would starve it while the
kernel talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

TIMEOUT = 60.0


class KernelError(AssertionError):
    pass


class Kernel:
    def __init__(
        self, kernel_id: str, client: AsyncKernelClient, session_id: str | None = None
    ) -> None:
        self.id = kernel_id
        self.client = client
        self.session_id = session_id
        #: Every IOPub message seen while running code, for checks on comms.
        self.iopub: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, jp_fetch: Any, jp_serverapp: Any, notebook: str | None = None) -> Kernel:
        """A kernel of its own, or, with `notebook` (a path), a notebook's session's
        kernel, as JupyterLab starts it when one opens the notebook."""
        session_id = None
        if notebook is None:
            response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({}))
            kernel_id = json.loads(response.body)["id"]
        else:
            body = {"path": notebook, "name": notebook, "type": "notebook", "kernel": {}}
            response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
            session = json.loads(response.body)
            session_id, kernel_id = session["id"], session["kernel"]["id"]
        manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
        # The server's manager as parent: "is the kernel alive?" then asks the
        # process, not a heartbeat that a slow-starting kernel has not sent yet.
        client = AsyncKernelClient(parent=manager)
        client.load_connection_file(manager.connection_file)
        client.start_channels()
        await client.wait_for_ready(timeout=TIMEOUT)
        return cls(kernel_id, client, session_id)

    async def run(self, code: str, timeout: float = TIMEOUT) -> str:
        """Execute `code`; its stdout, or KernelError with the traceback."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            self.iopub.append(msg)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = await self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        if errors or reply["content"]["status"] != "ok":
            raise KernelError(f"kernel error running:\n{code}\n" + "\n".join(errors))
        return "".join(out)

    async def value(self, expression: str) -> Any:
        """The JSON value of `expression` in the kernel."""
        text = await self.run(f"import json as _j; print(_j.dumps({expression}))")
        return json.loads(text.strip().splitlines()[-1])

    async def wait_until(self, expression: str, timeout: float = TIMEOUT) -> None:
        """Poll until `expression` is true in the kernel."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self.value(f"bool({expression})"):
            if loop.time() > deadline:
                raise AssertionError(f"{expression} did not become true within {timeout} s")
            await asyncio.sleep(0.2)

    async def shutdown(self, jp_fetch: Any) -> None:
        self.client.stop_channels()
        if self.session_id is not None:
            await jp_fetch("api", "sessions", self.session_id, method="DELETE")
        else:
            await jp_fetch("api", "kernels", self.id, method="DELETE")


@contextlib.asynccontextmanager
async def running_kernel(
    jp_fetch: Any, jp_serverapp: Any, notebook: str | None = None
) -> AsyncIterator[Kernel]:
    """A kernel for the body of an `async with` (fixtures stay sync in this suite)."""
    kernel = await Kernel.start(jp_fetch, jp_serverapp, notebook)
    try:
        yield kernel
    finally:
        await kernel.shutdown(jp_fetch)


async def comm_update_containing(kernel: Kernel, text: str, timeout: float = 60.0) -> None:
    """Read IOPub until a widget state update that mentions `text` goes to the front end.

    Updates made on the client's thread belong to no cell, so they are read
    here directly rather than through an execute request.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await kernel.client.get_iopub_msg(timeout=1)
        except Exception:  # queue.Empty
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content["data"].get("method") == "update":
            if text in json.dumps(content["data"].get("state", {})):
                return
    raise AssertionError(f"no widget update mentioning {text!r} reached the front end")


async def converged(kernels: list[Kernel], expression: str, timeout: float = TIMEOUT) -> Any:
    """Poll until `expression` has one value in every kernel (kernels hear of each
    other's writes through the server, each at its own time); that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        values = [await kernel.value(expression) for kernel in kernels]
        if all(value == values[0] for value in values):
            return values[0]
        if loop.time() > deadline:
            raise AssertionError(f"{expression} differs between kernels: {values}")
        await asyncio.sleep(0.2)
