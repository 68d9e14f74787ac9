"""A widget notebook executes headless, as ``jupyter nbconvert --execute`` runs it for teachers.

With ``ipywidgets.interact`` notebook 00's episode picker kept nbclient waiting until its cell
timeout; ``course.figure_controls`` draws into one ``Output`` and returns at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_few_shot_task.ipynb"


@pytest.mark.slow
def test_widget_notebook_executes_headless_without_waiting(monkeypatch) -> None:
    monkeypatch.setenv("MSANET_FAST", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # 60 s per cell: the whole notebook takes about 10 s in fast mode; a hang hits the limit
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    widget_cells = [c for c in nb.cells if c.cell_type == "code" and "figure_controls" in c.source]
    assert widget_cells, "notebook 00 lost its widget cell"
    for cell in widget_cells:
        kinds = [o.get("data", {}).keys() for o in cell.outputs if o.output_type == "display_data"]
        assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds), cell.outputs
