"""Structural rules every course notebook follows (see notebooks/AUTHORING.md).

nbval (run separately, `pytest --nbval-lax notebooks/`) executes the notebooks; these checks make
sure they are stored clean and keep the course template.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def test_the_course_has_notebooks() -> None:
    assert len(NOTEBOOKS) >= 10, f"expected the numbered course notebooks, found {NOTEBOOKS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_template(path: Path) -> None:
    cells = _cells(path)
    text = "\n".join(_source(c) for c in cells)
    assert _source(cells[0]).lstrip().startswith("# "), f"{path.name} must start with a title"
    for heading in ("Learning goals", "Prerequisites", "Runtime"):
        assert heading in text, f"{path.name} lacks a '{heading}' section"
    assert "course.setup(" in text, f"{path.name} must call course.setup()"
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert "assert" in code, f"{path.name} has no assertion cell checking what it teaches"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_names_its_kernel_and_language(path: Path) -> None:
    # Without a kernelspec JupyterLab opens a "Select Kernel" dialog instead of running.
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert meta.get("kernelspec", {}).get("name") == "python3", f"{path.name}: no python3 kernelspec"
    assert meta["kernelspec"].get("language") == "python", f"{path.name}: kernelspec language"
    assert meta.get("language_info", {}).get("name") == "python", f"{path.name}: no language_info"
