"""Every notebook follows the course's shape: the roadmap at the top, exercises at three levels
with hints, checks that provably reject known mistakes, and written answers to its questions.

The rejection itself runs in every notebook run (``course.exercise`` checks the solutions file's
``MISTAKES`` first, so nbval fails on a check that accepts one); this test makes sure no exercise
is left without a catalogued mistake and that the solutions agree with the notebooks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from msanet_lib import course

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CALL = re.compile(r"course\.exercise\(\s*\w+\s*,\s*\"([^\"]+)\"\s*,\s*\"([^\"]+)\"")
LEVELS = ("Warm-up", "Variant", "Experiment")


def _cells(path: Path) -> tuple[str, str]:
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return code, text


def test_there_are_twelve_notebooks() -> None:
    assert len(NOTEBOOKS) == 12, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_every_exercise_check_has_known_mistakes(path: Path) -> None:
    code, _ = _cells(path)
    calls = CALL.findall(code)
    assert calls, f"{path.name} has no checked exercise"
    for notebook, name in calls:
        assert notebook == path.stem, f"{path.name} calls exercise {name!r} of {notebook!r}"
        assert course.load_solution(notebook, name), name
        assert course.known_mistakes(notebook, name), (
            f"{name} in {path.name}: add a typical wrong answer to MISTAKES in "
            f"notebooks/solutions/{notebook}.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_exercises_come_at_three_levels_with_hints(path: Path) -> None:
    _, text = _cells(path)
    for level in LEVELS:
        assert re.search(rf"^#+ .*{level}", text, re.MULTILINE), f"{path.name}: no {level} exercise"
    assert text.count("<summary>Hint") >= len(LEVELS), f"{path.name}: every level needs a hint"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_questions_have_written_answers(path: Path) -> None:
    _, text = _cells(path)
    answers = path.parent / "solutions" / f"{path.stem}.md"
    assert answers.is_file(), f"no written answers at {answers}"
    asked = len(re.findall(r"\*\*Question \d+", text))
    answered = len(re.findall(r"^#+ Question \d+", answers.read_text(), re.MULTILINE))
    assert asked >= 1, f"{path.name} asks no conceptual question"
    assert answered == asked, f"{path.name} asks {asked} questions, {answers.name} answers {answered}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_roadmap_opens_every_notebook(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first_code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")[:3000]
    assert f"roadmap(here={int(path.stem[:2])})" in first_code, (
        f"{path.name}: draw roadmap(here={int(path.stem[:2])}) in one of the first cells")
