"""The browser check's blank-figure test (scripts/check_notebooks_in_browser.py) must be able
to fail: a figure that is white except for its title, as notebook 00 once sent to the browser,
is blank; real figures are not. The browser itself is not needed here."""

import importlib.util
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_notebooks_in_browser.py"


def _check_module():
    spec = importlib.util.spec_from_file_location("check_notebooks_in_browser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_blank_figures_are_reported() -> None:
    check = _check_module()
    empty = plt.figure(figsize=(8, 3))
    assert "blank" in check.blank_reason(_png(empty))
    title_only = plt.figure(figsize=(8, 3))
    title_only.suptitle("class 3: a title and nothing else")
    assert "blank" in check.blank_reason(_png(title_only))
    strip = plt.figure(figsize=(8, 3))  # plenty of ink, all of it in one band: still blank
    strip.add_artist(plt.Rectangle((0.0, 0.82), 1.0, 0.12, transform=strip.transFigure))
    assert "one strip" in (check.blank_reason(_png(strip)) or "")


def test_real_figures_are_not_blank() -> None:
    check = _check_module()
    fig, axes = plt.subplots(1, 3, figsize=(8, 3))
    for ax in axes:
        ax.imshow(np.random.default_rng(0).random((16, 16)))
    assert check.blank_reason(_png(fig)) is None
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(np.linspace(0, 1, 19), np.linspace(0, 1, 19) ** 2, marker="o")
    ax.set_xlabel("threshold")
    assert check.blank_reason(_png(fig)) is None
