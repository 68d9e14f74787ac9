"""A widget notebook executes headless, as ``jupyter nbconvert --execute`` runs it for teachers.

With ``ipywidgets.interact``, or an ``Output`` widget capturing the drawing, notebook 00's
episode picker kept nbclient waiting until its cell timeout (at random, most runs);
``course.figure_controls`` shows the first picture as a plain output and updates it in place.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_few_shot_task.ipynb"


@pytest.mark.slow
def test_widget_notebook_executes_headless_without_waiting(monkeypatch) -> None:
    monkeypatch.setenv("MSANET_FAST", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A stalled widget cell waits out the per-cell limit and nbclient then carries on without
    # an error (measured: 30 s with a 30 s limit, where the cell needs under 1 s), so the
    # stall shows only as a cell that lasted the whole limit.
    limit, started, lasted = 30, {}, {}

    def start(cell, cell_index: int) -> None:  # noqa: ANN001 - nbclient hook signature
        started[cell_index] = time.monotonic()

    def executed(cell, cell_index: int, **_: object) -> None:  # noqa: ANN001
        lasted[cell_index] = time.monotonic() - started[cell_index]

    client = nbclient.NotebookClient(nb, timeout=limit, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}},
                                     on_cell_start=start, on_cell_executed=executed)
    client.execute()
    stalled = {i: round(t) for i, t in lasted.items() if t >= limit}
    assert not stalled, f"cells that waited out the {limit} s limit: {stalled}"
    widget_cells = [c for c in nb.cells if c.cell_type == "code" and "figure_controls" in c.source]
    assert widget_cells, "notebook 00 lost its widget cell"
    for cell in widget_cells:
        kinds = [o.get("data", {}).keys() for o in cell.outputs if o.output_type == "display_data"]
        assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds), cell.outputs
        # the first picture is an ordinary output: it survives in the saved notebook
        assert sum("image/png" in k for k in kinds) == 1, kinds
