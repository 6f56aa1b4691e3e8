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
from collections.abc import AsyncIterator
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

TIMEOUT = 60.0


class KernelError(AssertionError):
    pass


class Kernel:
    def __init__(self, kernel_id: str, client: AsyncKernelClient) -> None:
        self.id = kernel_id
        self.client = client
        #: Every IOPub message seen while running code, for checks on comms.
        self.iopub: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, jp_fetch: Any, jp_serverapp: Any) -> Kernel:
        response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({}))
        kernel_id = json.loads(response.body)["id"]
        manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
        # The server's manager as parent: "is the kernel alive?" then asks the
        # process, not a heartbeat that a slow-starting kernel has not sent yet.
        client = AsyncKernelClient(parent=manager)
        client.load_connection_file(manager.connection_file)
        client.start_channels()
        await client.wait_for_ready(timeout=TIMEOUT)
        return cls(kernel_id, client)

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
        await jp_fetch("api", "kernels", self.id, method="DELETE")


@contextlib.asynccontextmanager
async def running_kernel(jp_fetch: Any, jp_serverapp: Any) -> AsyncIterator[Kernel]:
    """A kernel for the body of an `async with` (fixtures stay sync in this suite)."""
    kernel = await Kernel.start(jp_fetch, jp_serverapp)
    try:
        yield kernel
    finally:
        await kernel.shutdown(jp_fetch)
