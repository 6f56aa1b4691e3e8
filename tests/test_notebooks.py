"""The notebooks in `notebooks/` run top to bottom in a kernel started by a real
Jupyter server (its REST API), executed by nbclient."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(json.dumps(output.get("data", {})))
    return "\n".join(parts)


async def run_notebook(name: str, jp_fetch: Any, jp_serverapp: Any) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({}))
    kernel_id = json.loads(response.body)["id"]
    try:
        manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
        # nbclient drives the server's own kernel manager: the kernel already
        # runs, so it only attaches a client, and leaves shutdown to the server.
        client = NotebookClient(nb, km=manager, timeout=120, allow_errors=False)
        await client.async_execute()
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    return nb


def test_notebooks_are_committed_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.timeout(300)
async def test_demo_notebook_runs(jp_fetch: Any, jp_serverapp: Any) -> None:
    nb = await run_notebook("demo.ipynb", jp_fetch, jp_serverapp)
    text = outputs_text(nb)
    assert "connected as" in text and ": open" in text
    assert "received 30 samples" in text
    assert "application/vnd.jupyter.widget-view+json" in text  # the widgets were displayed


@pytest.mark.timeout(300)
async def test_client_api_notebook_runs(jp_fetch: Any, jp_serverapp: Any) -> None:
    nb = await run_notebook("client_api.ipynb", jp_fetch, jp_serverapp)
    text = outputs_text(nb)
    assert "acknowledged:" in text
    assert "states seen: ['connecting', 'open', 'closed']" in text


@pytest.mark.timeout(300)
async def test_shared_state_notebook_runs(jp_fetch: Any, jp_serverapp: Any) -> None:
    nb = await run_notebook("shared_state.ipynb", jp_fetch, jp_serverapp)
    text = outputs_text(nb)
    assert "connected as" in text
    assert "linked slider: plot/frequency = 1.0" in text
    assert "params: {'learning_rate': 0.01, 'epochs': 10}" in text
    assert "epochs for everyone: 11" in text
    assert "counts: {'blue': 0, 'green': 1, 'orange': 0}" in text
    assert "application/vnd.jupyter.widget-view+json" in text
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Open this notebook as two people" in first.source
