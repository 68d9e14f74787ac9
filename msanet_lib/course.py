"""Helpers every notebook of the course uses: set-up, "check your understanding" and exercises.

A notebook starts with::

    from msanet_lib import course
    cfg = course.setup()          # seeds, device, fast mode, paths; prints a one-line summary

compares what it built from scratch with the library::

    course.assert_close(my_prior, library_prior, "prior mask")

and ends with exercises whose checks run on the learner's answer, or, while the learner has not
tried yet, on the worked solution kept in ``notebooks/solutions/`` (so CI proves that the checks
and the solutions agree, and a learner is never blocked by an unfinished exercise)::

    def exercise_1(...):
        ...                       # the learner's code; returns None until written
    course.exercise(exercise_1, "03_prior_mask", "exercise_1", check=check_fn)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msanet_lib.model.msanet import MSANet, MSANetConfig, msanet_for_shots
from msanet_lib.runtime import seed_all, select_device
from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.config import deep_merge, load_config, parse_override
from msanet_lib.utils import REPO_ROOT, data_root, fast_mode

SOLUTIONS_DIR = REPO_ROOT / "notebooks" / "solutions"


@dataclass(frozen=True)
class CourseSettings:
    """What a notebook needs to know about the machine it runs on."""

    fast: bool
    device: torch.device
    data_root: Path
    outputs: Path
    seed: int


def setup(seed: int = 0, device: str | None = None, verbose: bool = True) -> CourseSettings:
    """Seed everything, pick the device and report the fast mode.

    ``MSANET_FAST=1`` (set by CI) keeps every notebook short without changing what it teaches;
    ``MSANET_DEVICE`` overrides the device choice.
    """
    seed_all(seed)
    dev = select_device(device or os.environ.get("MSANET_DEVICE", "auto"))
    outputs = REPO_ROOT / "outputs"
    outputs.mkdir(exist_ok=True)
    settings = CourseSettings(fast_mode(), dev, data_root(), outputs, seed)
    if verbose:
        mode = "fast mode (MSANET_FAST=1)" if settings.fast else "full mode"
        print(f"torch {torch.__version__} | device {dev} | {mode} | data in {settings.data_root}")
    return settings


def assert_close(
    actual: Any, expected: Any, name: str, atol: float = 1e-5, rtol: float = 1e-5
) -> None:
    """Assert that a from-scratch result equals the library's, with a message a learner can use.

    Accepts tensors, arrays or numbers. On success prints a short confirmation so the learner
    sees the check ran.
    """
    a = torch.as_tensor(actual).detach().cpu().double()
    e = torch.as_tensor(expected).detach().cpu().double()
    if a.shape != e.shape:
        raise AssertionError(
            f"{name}: shape {tuple(a.shape)} differs from the library's {tuple(e.shape)}. "
            "Check which dimensions you reduced or concatenated."
        )
    diff = (a - e).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        where = np.unravel_index(int(diff.argmax()), tuple(a.shape)) if diff.numel() else ()
        raise AssertionError(
            f"{name}: max abs difference {worst:.3g} at index {tuple(int(i) for i in where)} "
            f"(tolerance {atol:g}); yours {a.flatten()[diff.argmax()].item():.6g}, "
            f"library {e.flatten()[diff.argmax()].item():.6g}."
        )
    print(f"OK  {name}: equal within {atol:g} (max abs difference {worst:.1e}).")


def _solutions_module(notebook: str) -> Any:
    path = SOLUTIONS_DIR / f"{notebook}.py"
    if not path.is_file():
        raise FileNotFoundError(f"No solutions file {path}: is the repository complete?")
    spec = importlib.util.spec_from_file_location(f"solutions_{notebook}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_solution(notebook: str, name: str) -> Callable[..., Any]:
    """Load ``name`` from ``notebooks/solutions/<notebook>.py`` (the worked solutions)."""
    module = _solutions_module(notebook)
    if not hasattr(module, name):
        raise AttributeError(f"{SOLUTIONS_DIR / notebook}.py has no solution named {name!r}.")
    return getattr(module, name)


def known_mistakes(notebook: str, name: str) -> list[Callable[..., Any]]:
    """The wrong answers to exercise ``name`` kept in the solutions file's ``MISTAKES`` table
    (``{exercise name: [wrong function, ...]}``): typical slips a check must catch."""
    return list(getattr(_solutions_module(notebook), "MISTAKES", {}).get(name, []))


class NotAttempted(Exception):
    """Raised by an exercise stub the learner has not filled in yet."""


def reject_mistakes(check: Callable[[Callable[..., Any]], None],
                    mistakes: list[Callable[..., Any]], name: str) -> int:
    """Run ``check`` on every known wrong answer and fail if one of them passes.

    A check "rejects" a mistake when it raises (an ``AssertionError``, or the error the wrong
    answer itself causes, as it would for a learner). Returns how many were rejected.
    """
    for wrong in mistakes:
        try:
            check(wrong)
        except Exception:  # noqa: BLE001 - any failure is a rejection, as for a learner
            continue
        what = (wrong.__doc__ or wrong.__name__).strip().splitlines()[0]
        raise AssertionError(f"The check of {name} accepts a known mistake ({what}): "
                             "the check is too weak.")
    return len(mistakes)


def exercise(
    attempt: Callable[..., Any],
    notebook: str,
    name: str,
    check: Callable[[Callable[..., Any]], None],
) -> bool:
    """Run ``check`` on the learner's ``attempt``; fall back to the worked solution if not tried.

    ``check(fn)`` must raise ``AssertionError`` when ``fn`` is wrong. An attempt that returns
    ``None`` or raises :class:`NotAttempted` counts as "not tried yet": the check then runs on
    the solution in ``notebooks/solutions/<notebook>.py`` so the notebook still runs top to
    bottom, and the learner is told where the solution is. Every run also proves the check
    rejects the solutions file's known mistakes for ``name`` (:func:`known_mistakes`), so a
    check that cannot fail fails CI. Returns True if the learner's own code passed.
    """
    def guarded(*args: Any, **kwargs: Any) -> Any:
        result = attempt(*args, **kwargs)
        if result is None:
            raise NotAttempted
        return result

    rejected = reject_mistakes(check, known_mistakes(notebook, name), name)
    caught = f" (and catches {rejected} typical mistake{'s' * (rejected != 1)})" if rejected else ""
    try:
        check(guarded)
    except NotAttempted:
        pass
    else:
        print(f"Well done: your {name} passes every check{caught}.")
        return True
    solution = load_solution(notebook, name)
    check(solution)
    print(
        f"{name}: not attempted yet. The checks pass on the worked solution in "
        f"notebooks/solutions/{notebook}.py{caught}; write yours and run this cell again."
    )
    return False


TOY_CHECKPOINTS = REPO_ROOT / "checkpoints" / "toy"


def toy_checkpoint(fold: int = 0) -> Path:
    """Where the shipped toy MSANet of ``fold`` lives (1-shot, trained by
    ``scripts/train_toy_models.py``): ``checkpoints/toy/fold<f>/msanet_1shot.pth``."""
    return TOY_CHECKPOINTS / f"fold{fold}" / "msanet_1shot.pth"


def load_toy_msanet(
    fold: int = 0,
    shots: int = 1,
    device: torch.device | str = "cpu",
    verbose: bool = True,
    **overrides: Any,
) -> tuple[torch.nn.Module, bool]:
    """The shipped toy MSANet of ``fold`` for ``shots``-shot episodes, in eval mode.

    Returns ``(model, trained)``. Without a shipped checkpoint the model is randomly
    initialised (``trained`` False) and a notebook should say its figures only show the
    mechanism. A 1-shot model given K > 1 shots averages them uniformly (``kshot_trans_dim``
    0, whose 1/K initialisation weighs every shot the same), as ``msanet-eval`` does.
    ``overrides`` change config fields (e.g. ``kshot_order="bam"``); tensors whose shape the
    override changes keep their initial values.
    """
    path = toy_checkpoint(fold)
    if not path.is_file():
        if verbose:
            print(f"No shipped model at {path.relative_to(REPO_ROOT)}: using a RANDOMLY "
                  "INITIALISED toy MSANet; figures show the mechanism, not a trained model.")
        torch.manual_seed(0)
        fields = {**load_config("toy").model_config().__dict__, "shots": shots, **overrides}
        return MSANet(MSANetConfig(**fields)).to(device).eval(), False
    ckpt = load_checkpoint(path)
    model = msanet_for_shots(ckpt["model_config"], ckpt["state_dict"], shots, **overrides)
    if verbose:
        print(f"Loaded the trained toy MSANet (fold {fold}) from {path.relative_to(REPO_ROOT)}.")
    return model.to(device).eval(), True


def load_toy_backbone(fold: int = 0) -> tuple[torch.nn.Module, bool]:
    """The frozen ``resnet_toy`` backbone of the shipped toy model (``(backbone, trained)``)."""
    model, trained = load_toy_msanet(fold, verbose=False)
    print(("Loaded the trained" if trained else "Using a RANDOMLY INITIALISED")
          + f" toy backbone (fold {fold}).")
    return model._backbone.eval().requires_grad_(False), trained


def figure_controls(draw: Callable[..., None], **controls: Any) -> Any:
    """Widgets that redraw one figure: ``draw(**values)`` draws it with pyplot.

    ``controls`` maps ``draw``'s keyword names to ipywidgets controls. The first picture is
    an ordinary output of the cell (it stays in the saved notebook and in HTML exports), drawn
    at once; every change of a control replaces that picture in place (a display update),
    never a second figure below the first. No ``Output`` widget captures the drawing: with one,
    ``jupyter nbconvert --execute`` stalled at random on such cells until its timeout (the
    nbclient race of jupyter/nbclient#312; measured: 3 of 3 runs of notebook 00 waited 100 s
    at this cell, 0 of 3 after). Returns the box of controls.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    def render() -> Any:
        before = set(plt.get_fignums())
        show, plt.show = plt.show, lambda *args, **kwargs: None  # keep the figure for us
        try:
            draw(**{name: w.value for name, w in controls.items()})
        finally:
            plt.show = show
        new = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        if not new:
            raise RuntimeError("figure_controls: draw() made no pyplot figure to show.")
        for fig in new[:-1]:
            plt.close(fig)
        return new[-1]

    box = widgets.HBox(list(controls.values()))
    display(box)
    first = render()
    handle = display(first, display_id=True)
    plt.close(first)

    def redraw(_change: Any = None) -> None:
        fig = render()
        handle.update(fig)
        plt.close(fig)

    for widget in controls.values():
        widget.observe(redraw, names="value")
    return box


# --------------------------------------------------------------------------------------------
# The running leaderboard: one row per idea of the paper, toy fold 0, 1-shot
# --------------------------------------------------------------------------------------------

TOY_RESULTS = TOY_CHECKPOINTS / "results"
# (key, label, where the number comes from): the order in which the course adds the ideas
LEADERBOARD_ROWS = (
    ("all_foreground", "all foreground (no model)", "fold"),
    ("prototype", "training-free prototype, thresholded", "fold"),
    ("pfenet", "prototype + prior (PFENet-like)", "ablation"),
    ("multi_similarity", "+ multi-similarity", "ablation"),
    ("attention", "+ attention", "ablation"),
    ("msanet", "+ base-learner ensemble (= MSANet)", "ablation"),
    ("shipped", "MSANet, shipped model (longer training)", "fold"),
)
# MSANet README and abstract, mean mIoU over the 4 folds, (1-shot, 5-shot) (docs/protocol.md)
PAPER_MIOU = {
    ("PASCAL-5i", "VGG16"): (65.76, 70.40), ("PASCAL-5i", "ResNet50"): (68.52, 72.60),
    ("PASCAL-5i", "ResNet101"): (69.13, 73.99), ("COCO-20i", "ResNet50"): (48.03, 53.67),
    ("COCO-20i", "ResNet101"): (51.09, 56.80),
}


@dataclass(frozen=True)
class Leaderboard:
    """Rows of ``(label, mIoU mean, std over training seeds or None, runs, how)``."""

    rows: tuple[tuple[str, float, float | None, int, str], ...]

    def value(self, key: str) -> float:
        """The mean mIoU of row ``key`` (a key of :data:`LEADERBOARD_ROWS`)."""
        labels = {k: label for k, label, _ in LEADERBOARD_ROWS}
        for label, mean, *_ in self.rows:
            if label == labels[key]:
                return mean
        raise KeyError(f"{key!r} is not on this leaderboard (yet).")

    def lines(self) -> list[str]:
        out = ["| method | fold-0 1-shot mIoU | how it was measured |", "|---|---:|---|"]
        for label, mean, std, runs, how in self.rows:
            spread = f" ± {std:.2f}" if std is not None else ""
            out.append(f"| {label} | {mean:.2f}{spread} | {how}{'' if runs < 2 else f', {runs} training seeds'} |")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_markdown_(self) -> str:
        return str(self)


def leaderboard(upto: str = "shipped", results: Path = TOY_RESULTS) -> Leaderboard:
    """The course's leaderboard up to and including row ``upto`` (a key of
    :data:`LEADERBOARD_ROWS`), read from the result files of ``scripts/train_toy_models.py``.

    All rows are the toy benchmark's fold 0, 1-shot, scored with the authors' protocol. The
    baselines and the shipped model come from ``fold0.json`` (1000 episodes x 2 test seeds);
    the trained ablation rows from ``ablation.json`` (mean ± standard deviation over training
    seeds, each with a shorter stage 2, 1000 episodes x 1 test seed).
    """
    keys = [k for k, _, _ in LEADERBOARD_ROWS]
    if upto not in keys:
        raise ValueError(f"upto must be one of {keys}, not {upto!r}.")
    fold_file, ablation_file = results / "fold0.json", results / "ablation.json"
    for f in (fold_file, ablation_file):
        if not f.is_file():
            raise FileNotFoundError(f"No toy results at {f}: run `python scripts/train_toy_models.py "
                                    "evaluate` (or restore checkpoints/toy/results from git).")
    fold, ablation = json.loads(fold_file.read_text()), json.loads(ablation_file.read_text())
    fold_keys = {"all_foreground": "all_foreground_1shot", "prototype": "prototype_1shot",
                 "shipped": "1shot"}
    rows = []
    for key, label, source in LEADERBOARD_ROWS[: keys.index(upto) + 1]:
        if source == "fold":
            r = fold[fold_keys[key]]
            n = len(r["seeds"])
            how = f"{r['episodes']} episodes x {n} test seed{'s' * (n != 1)}"
            if key == "prototype":
                how += f", threshold {r['threshold']} chosen on base classes"
            rows.append((label, r["miou"], None, 1, how))
        else:
            r = ablation[label]
            its = sorted({run.get("iterations") for run in r["runs"]} - {None})
            n = len(r["runs"][0]["seeds"])
            how = (f"stage 2 {its[0]} iterations, " if len(its) == 1 else "") + \
                f"{r['runs'][0]['episodes']} episodes x {n} test seed{'s' * (n != 1)}"
            rows.append((label, r["miou_mean"], r["miou_std"], len(r["runs"]), how))
    return Leaderboard(tuple(rows))


def toy_model_with(overrides: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """A freshly initialised toy MSANet (eval mode) built from ``toy.yaml`` plus
    ``msanet-train --set`` style ``overrides`` (``{"model.use_attention": False}``; a
    top-level ``"shots"`` works too): what an Experiment exercise's change builds."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else value
        nested = deep_merge(nested, parse_override(f"{key}={text}"))
    torch.manual_seed(seed)
    return MSANet(load_config("toy", nested, fast=False).model_config()).eval()


def stage2_experiment(overrides: dict[str, Any], name: str, run: bool = False,
                      epochs: int = 3, episodes: int = 1000) -> list[list[str]]:
    """The commands of a notebook's Experiment exercise: stage 2 on toy fold 0 with
    ``overrides`` (``msanet-train --set`` keys, e.g. ``{"model.use_attention": False}``),
    then its score on the leaderboard's terms. Printed always; run only when ``run``.

    Training starts from the shipped fold-0 model's frozen backbone and base learner (the
    stage-1 weights of the leaderboard's ablation rows) and lasts ``epochs`` epochs of about
    200 iterations (3 = the ablation rows' budget); ``msanet-eval`` scores ``episodes``
    episodes with the first test seed, like those rows. Output goes to ``runs/<name>``; a
    ``"shots"`` entry trains a K-shot model.
    """
    out = REPO_ROOT / "runs" / name
    shots = int(overrides.get("shots", 1))
    sets = [a for k, v in overrides.items() if k != "shots"
            for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]
    commands = [
        ["msanet-train", "--stage", "meta", "--fold", "0", "--shots", str(shots),
         "--set", f"meta.epochs={epochs}", "--set", f"meta.base_learner={toy_checkpoint(0)}",
         *sets, "--out", str(out)],
        ["msanet-eval", "--checkpoint", str(out / f"meta_{shots}shot" / "best.pth"),
         "--episodes", str(episodes), "--seeds", "510", "--json", str(out / "eval.json")],
    ]
    for cmd in commands:
        print(" ".join(cmd))
    if run:
        for cmd in commands:
            subprocess.run(cmd, check=True)
    return commands
