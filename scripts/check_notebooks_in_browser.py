"""Run the course notebooks in JupyterLab in a real (headless) Chromium and check their widgets.

A manual check (CI has no browser). For each notebook that uses ipywidgets or ipympl (or each
notebook given on the command line) it:

1. opens the notebook in JupyterLab (started here from the current Python environment on
   127.0.0.1, a free port, a random token, ``--no-browser``, root = the repository) in a fresh
   workspace, which starts a fresh kernel whose environment has ``MSANET_FAST=1`` (``--env
   MSANET_FAST=0`` checks what only full mode shows, such as notebook 11's drawing canvas);
2. runs every cell through the UI (menu *Run > Run All Cells*) and waits until no cell is queued
   and the kernel is idle;
3. checks in the DOM that every code cell ran, that no output is a Python traceback, and that
   every widget output rendered as a visible widget (not "Loading widget...", not an error
   message, not a static fallback such as ``interactive(children=...)`` or ipympl's PNG, and an
   ipympl canvas that is not blank); a notebook whose code uses widgets must show at least one;
4. then acts as a learner would, through the UI, following the notebook's scenario
   (``SCENARIOS``: notebooks 00, 04 and 11; other notebooks get one step per slider and
   dropdown of each cell with controls and a figure, then a re-run from that cell): moves
   sliders with the keyboard, picks dropdown options (the fold of notebook 00), draws a lasso
   and a box with mouse drags on notebook 11's ipympl canvas (full mode), and re-runs from a
   cell (*Run > Run Selected Cell and All Below*). After Run All and after each step it waits
   until the kernel is idle and the figures stop changing, then asserts for every watched cell
   that its output area holds exactly the expected number of figures (``<img>`` or ipympl
   canvas), that none is blank (a screenshot of the figure: at least 1 % of its pixels differ
   from its background colour, and not all in one strip, such as a title over white), none is
   cut off sideways, no ipympl toolbar floats over one, no traceback appeared, and that the
   figure the step should change did change (a re-run: the cell's prompt changed);
5. saves a screenshot of the scenario's cells after the last step, and one of the first widget
   (or of the first error), then shuts the kernel down.

It prints a table ``notebook | cells | widgets rendered | errors | interaction | result`` and,
per notebook, a table of the figures after each step; it exits with status 1 if any notebook
fails, 2 if it could not run at all. JupyterLab is always shut down. It never writes a
notebook: autosave is off (settings in a temporary directory) and the server refuses every save
(a pre-save hook), so outputs never reach the stored notebooks.

Needs ``playwright`` (``pip install playwright``) and a Chromium binary; Playwright's own browser
download is not used (pass ``--chromium``, default ``/usr/bin/chromium``). The kernels import
this checkout's ``msanet_lib`` (the repository is put first on their ``PYTHONPATH``).

Examples::

    python scripts/check_notebooks_in_browser.py
    python scripts/check_notebooks_in_browser.py notebooks/00_few_shot_task.ipynb --out /tmp/shots
    python scripts/check_notebooks_in_browser.py --all
    python scripts/check_notebooks_in_browser.py --env MSANET_FAST=0 notebooks/11_playground.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# Source text that means "this notebook shows widgets".
WIDGET_MARKERS = re.compile(r"ipywidgets|\binteract\b|%matplotlib\s+(widget|ipympl)")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab user settings for the check: never write the notebook, keep every cell in the DOM
# (windowed notebooks detach off-screen cells), no kernel picker, no news pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# Server config: a second lock, refusing any save, so a run can never overwrite a notebook that
# a colleague is editing (or store outputs in it).
SERVER_CONFIG = """
from tornado.web import HTTPError


def refuse_save(model, path, contents_manager, **kwargs):
    raise HTTPError(403, f"the browser check is read-only; refused to save {path}")


c.ContentsManager.pre_save_hook = refuse_save
"""

# Reads the notebook's DOM once the run is over. Returns cells, errors and widget outputs.
INSPECT_JS = r"""
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const firstLine = (cell) => {
    const ed = cell.querySelector('.jp-InputArea-editor .cm-content, .jp-InputArea-editor');
    return ed ? ed.innerText.split('\n').find((l) => l.trim()) || '' : '';
  };
  const canvasIsBlank = CANVAS_IS_BLANK;
  const res = {total: 0, executed: 0, unexecuted: [], errors: [], widgets: [], fallbacks: []};
  const allCells = [...nb.querySelectorAll('.jp-Cell')];
  allCells.forEach((cell, idx) => {
    if (!cell.classList.contains('jp-CodeCell')) return;
    res.total += 1;
    const where = {cell: idx + 1, line: firstLine(cell).slice(0, 80)};
    const prompt = (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '';
    if (/\[\d+\]/.test(prompt)) res.executed += 1;
    else res.unexecuted.push(Object.assign({prompt: prompt.trim()}, where));
    // Every output, including the ones nested in Output widgets (interact callbacks).
    for (const out of cell.querySelectorAll('.jp-OutputArea-output')) {
      const text = out.innerText || '';
      if (/Traceback \(most recent call last\)/.test(text)) {
        const lines = text.trim().split('\n').filter((l) => l.trim());
        res.errors.push(Object.assign({last: lines[lines.length - 1].slice(0, 300)}, where));
      }
    }
    // Top-level outputs only: is each widget view a visible, rendered widget?
    for (const child of cell.querySelectorAll('.jp-Cell-outputArea > .jp-OutputArea-child')) {
      const out = child.querySelector('.jp-OutputArea-output');
      if (!out) continue;
      // A widget view has no data-mime-type (the widget manager renders it); a mime renderer
      // showing widget classes or a widget repr is the static fallback, e.g. ipympl's PNG.
      const mime = out.getAttribute('data-mime-type');
      const text = (out.innerText || '').trim();
      if (mime) {
        const repr = /^(interactive|[A-Z][A-Za-z]*(Slider|Box|Dropdown|Button|Output|Canvas|Toolbar|Widget|Tab|Accordion|Text|Checkbox|Play|HTML|Image)[A-Za-z]*)\(/.test(text);
        if (repr || out.querySelector('.jupyter-widgets')) {
          res.fallbacks.push(Object.assign({mime, text: text.replace(/\s+/g, ' ').slice(0, 100)}, where));
        }
        continue;
      }
      if (!out.querySelector('.jupyter-widgets') &&
          !/Loading widget|Error displaying widget|Error rendering/.test(text)) continue;
      const r = out.getBoundingClientRect();
      const problems = [];
      if (/Loading widget/.test(text)) problems.push('still shows "Loading widget..."');
      const m = text.match(/Error (displaying|rendering) widget[^\n]*/);
      if (m) problems.push(m[0]);
      if (!out.querySelector('.jupyter-widgets, .widget-container, .jupyter-matplotlib'))
        problems.push('no .jupyter-widgets element');
      if (r.width < 2 || r.height < 2) problems.push(`not visible (${r.width}x${r.height} px)`);
      for (const fig of out.querySelectorAll('.jupyter-matplotlib')) {
        const c = fig.querySelector('canvas');
        if (!c || c.width < 2 || c.height < 2) problems.push('ipympl figure without a canvas');
        else if (canvasIsBlank(c)) problems.push('ipympl figure canvas is blank (no frame drawn)');
      }
      const kinds = new Set();
      out.querySelectorAll('[class*="widget-"], .jupyter-matplotlib').forEach((e) => {
        for (const c of e.classList) {
          if (/^widget-(slider|dropdown|button|output|image|html|checkbox|text|play|tab)$/.test(c)
              || c === 'jupyter-matplotlib') kinds.add(c);
        }
      });
      res.widgets.push(Object.assign({problems, kinds: [...kinds].sort(),
                                      size: `${Math.round(r.width)}x${Math.round(r.height)}`},
                                     where));
    }
  });
  return res;
}
"""

# An ipympl figure whose first frame never arrived is a canvas of one flat colour.
CANVAS_IS_BLANK = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) return false;
    }
    return true;
  }"""
BLANK_FIGURES_JS = f"""
() => {{
  const canvasIsBlank = {CANVAS_IS_BLANK};
  return [...document.querySelectorAll('.jupyter-matplotlib')]
    .filter((f) => {{ const c = f.querySelector('canvas'); return c && canvasIsBlank(c); }}).length;
}}
"""
INSPECT_JS = INSPECT_JS.replace("CANVAS_IS_BLANK", CANVAS_IS_BLANK)

# Queued/running cells show "[*]" in their prompt, cells that ran show "[n]".
PROMPTS_JS = r"""
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const prompts = nb ? [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')] : [];
  return {total: prompts.length,
          queued: prompts.filter((p) => p.textContent.includes('*')).length,
          executed: prompts.filter((p) => /\[\d+\]/.test(p.textContent)).length};
}
"""


# Every figure in the output area of the given cells (0-based among all cells): an <img> of an
# output, or an ipympl figure (counted once, whatever its canvases). Each one is tagged with
# data-nbcheck-fig so that Python can take its screenshot; hash = what it shows now.
FIGURES_JS = r"""
(cells) => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const all = nb ? [...nb.querySelectorAll('.jp-Cell')] : [];
  const hash = (s) => { let h = 5381; for (let i = 0; i < s.length; i++) h = ((h * 33) ^ s.charCodeAt(i)) >>> 0; return h + ':' + s.length; };
  document.querySelectorAll('[data-nbcheck-fig]').forEach((e) => e.removeAttribute('data-nbcheck-fig'));
  const res = {};
  for (const idx of cells) {
    const cell = all[idx];
    if (!cell) { res[idx] = null; continue; }
    const area = cell.querySelector('.jp-Cell-outputArea');
    const prompt = ((cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '').trim();
    const figs = [];
    const found = area ? [...area.querySelectorAll('.jupyter-matplotlib, .jp-OutputArea-output img')]
      .filter((e) => !(e.tagName === 'IMG' && e.closest('.jupyter-matplotlib'))) : [];
    found.forEach((e, n) => {
      const ipympl = e.classList.contains('jupyter-matplotlib');
      const target = ipympl ? (e.querySelector('.jupyter-matplotlib-canvas-div') || e) : e;
      const tag = `${idx}-${n}`;
      target.setAttribute('data-nbcheck-fig', tag);
      const r = target.getBoundingClientRect();
      const h = ipympl
        ? [...e.querySelectorAll('canvas')].map((c) => { try { return hash(c.toDataURL()); } catch (err) { return '?'; } }).join(',')
        : hash(e.currentSrc || e.src || '');
      // Cut off: pixels of the figure outside the visible box of an ancestor (up to the output
      // area) that clips or scrolls sideways, e.g. a gallery wider than the cell.
      let cut = 0, cutBy = '';
      for (let a = target.parentElement; a && area && area.contains(a); a = a.parentElement) {
        const ox = getComputedStyle(a).overflowX;
        if (ox === 'visible') continue;
        const left = a.getBoundingClientRect().left + a.clientLeft;
        const hidden = Math.max(0, Math.round(r.right - (left + a.clientWidth)))
                     + Math.max(0, Math.round(left - r.left));
        if (hidden > cut) {
          cut = hidden;
          cutBy = `${String(a.className || a.tagName).split(' ')[0]} (overflow-x ${ox})`;
        }
      }
      const over = area ? Math.round(r.right - area.getBoundingClientRect().right) : 0;
      if (over > cut) { cut = over; cutBy = 'the output area'; }
      // ipympl's toolbar floats over the figure (position: absolute) and, in its default
      // fade-in-fade-out mode, hides what lies under it (an axis label) while the mouse is there.
      let covered = 0;
      const tb = ipympl ? e.querySelector('.jupyter-matplotlib-toolbar') : null;
      if (tb && (tb.classList.contains('jupyter-matplotlib-toolbar-fadein-fadeout')
                 || getComputedStyle(tb).visibility !== 'hidden')) {
        const t = tb.getBoundingClientRect();
        covered = Math.max(0, Math.min(r.right, t.right) - Math.max(r.left, t.left))
                * Math.max(0, Math.min(r.bottom, t.bottom) - Math.max(r.top, t.top));
      }
      figs.push({tag, kind: ipympl ? 'canvas' : 'img', hash: h, width: Math.round(r.width),
                 height: Math.round(r.height), cut: Math.max(0, cut), cutBy,
                 covered: Math.round(covered)});
    });
    const text = area ? area.innerText || '' : '';
    res[idx] = {figs, prompt, text, traceback: /Traceback \(most recent call last\)/.test(text)};
  }
  return res;
}
"""

# The controls shown in each cell's outputs (for notebooks without a scenario of their own).
CONTROLS_JS = r"""
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const res = [];
  [...nb.querySelectorAll('.jp-Cell')].forEach((cell, idx) => {
    const area = cell.querySelector('.jp-Cell-outputArea');
    if (!area) return;
    const label = (w) => ((w.querySelector('.widget-label') || {}).innerText || '').trim();
    const sliders = [...area.querySelectorAll('.widget-slider')].filter((w) => w.querySelector('.noUi-handle')).map(label);
    const dropdowns = [...area.querySelectorAll('.widget-dropdown')].filter((w) => w.querySelector('select')).map(label);
    if (sliders.length || dropdowns.length) res.push({idx, sliders, dropdowns});
  });
  return res;
}
"""

# A figure counts as blank when under MIN_INK of its pixels differ from its background colour,
# or when what differs lies in one strip only (a title or an axis left over on white).
MIN_INK = 0.01
INK_DELTA = 24  # per channel, 0..255: anti-aliasing noise and light grey backgrounds are not ink
BLANK_GRID = 4


def blank_reason(png: bytes) -> str | None:
    """Why the screenshot ``png`` of a figure looks blank, or None if it shows a picture.

    The background is the most frequent colour; "ink" is every pixel that differs from it by
    more than INK_DELTA in a channel. Blank: less than MIN_INK of the pixels are ink, or the
    ink lies in a single row or a single column of a BLANK_GRID x BLANK_GRID grid (e.g. a figure
    that is white except for a clipped title).
    """
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    h, w = img.shape[:2]
    if h < 2 * BLANK_GRID or w < 2 * BLANK_GRID:
        return f"blank: only {w}x{h} px"
    packed = (img[..., 0] << 16) | (img[..., 1] << 8) | img[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    bg = int(values[counts.argmax()])
    background = np.array([(bg >> 16) & 255, (bg >> 8) & 255, bg & 255])
    ink = (np.abs(img - background).max(axis=2) > INK_DELTA)
    share = float(ink.mean())
    if share < MIN_INK:
        return f"blank: {share:.2%} of {w}x{h} px differ from the background"
    tiles = np.array([[t.mean() > MIN_INK / 2 for t in np.array_split(row, BLANK_GRID, axis=1)]
                      for row in np.array_split(ink, BLANK_GRID, axis=0)])
    rows, cols = tiles.any(axis=1).sum(), tiles.any(axis=0).sum()
    if rows < 2 or cols < 2:
        return (f"blank: its {share:.1%} ink lies in one strip ({rows} row(s), {cols} column(s) "
                f"of a {BLANK_GRID}x{BLANK_GRID} grid), e.g. a title on an empty figure")
    return None


@dataclass(frozen=True)
class Step:
    """One thing a learner does, and the cell whose figure it must change.

    ``action``: ``slider`` (press the right arrow ``steps`` times on the slider labelled
    ``control``), ``dropdown`` (select the option labelled ``value``, else the next one),
    ``toggle`` (click the toggle button ``value``), ``lasso``/``box`` (mouse drag on the
    ipympl figure), ``run_below`` (select the cell, *Run > Run Selected Cell and All Below*).
    Cells are named by a piece of their source, so adding a cell does not break a scenario.
    """

    action: str
    cell: str
    control: str = ""
    value: str = ""
    steps: int = 1
    changes: str | None = "="  # marker of the cell whose figure must change; "=" = ``cell``
    full_only: bool = False  # only in full mode (MSANET_FAST=0), e.g. the drawing canvas

    def describe(self) -> str:
        if self.action == "slider":
            return f"slider '{self.control}' +{self.steps}"
        if self.action == "dropdown":
            return f"dropdown '{self.control}' -> {self.value or 'next'}"
        if self.action == "toggle":
            return f"toggle '{self.value}'"
        if self.action in ("lasso", "box"):
            return f"{self.action} drag on the canvas"
        return "Run Selected Cell and All Below"


@dataclass(frozen=True)
class Scenario:
    """Expected figures per cell, (fast, full), checked after Run All and after every step."""

    figures: dict[str, tuple[int, int]]
    steps: tuple[Step, ...]
    shots: dict[str, str]  # cell marker -> screenshot name (taken after the last step)


NB00_CONTROLS = "course.figure_controls(_show, fold=fold_w"
NB04_CONTROLS = "course.figure_controls(_show_block"
NB11_PICKER = "picker = widgets.IntSlider("
NB11_CANVAS = "LassoSelector(draw_ax"
NB11_MASKS = "masks: dict[str, np.ndarray] = {}"
NB11_GALLERY = 'main_mask = "your drawing" if'
NB11_CONTROLS = "lambda threshold, support_mask: gallery("
SCENARIOS: dict[str, Scenario] = {
    "00_few_shot_task": Scenario(
        figures={NB00_CONTROLS: (1, 1)},
        steps=(Step("slider", NB00_CONTROLS, "index"),
               Step("run_below", NB00_CONTROLS),  # new controls: do they work?
               Step("slider", NB00_CONTROLS, "index"),
               Step("dropdown", NB00_CONTROLS, "class"),
               Step("dropdown", NB00_CONTROLS, "fold", "1"),  # the sequence that once went white
               Step("slider", NB00_CONTROLS, "index", steps=3)),
        shots={NB00_CONTROLS: "browser-check-00-episode-widget"}),
    "04_multi_similarity": Scenario(
        figures={NB04_CONTROLS: (1, 1)},
        steps=(Step("slider", NB04_CONTROLS, "block"),
               Step("run_below", NB04_CONTROLS),
               Step("slider", NB04_CONTROLS, "block", steps=2)),
        shots={NB04_CONTROLS: "browser-check-04-similarity-widget"}),
    "11_playground": Scenario(
        figures={NB11_PICKER: (1, 1), NB11_CANVAS: (0, 1), NB11_MASKS: (1, 1),
                 NB11_GALLERY: (1, 1), NB11_CONTROLS: (2, 2)},
        steps=(Step("slider", NB11_PICKER, "toy image"),
               Step("run_below", NB11_CANVAS, changes=NB11_MASKS),
               Step("lasso", NB11_CANVAS, full_only=True),
               Step("toggle", NB11_CANVAS, value="box", changes=None, full_only=True),
               Step("box", NB11_CANVAS, full_only=True),
               Step("run_below", NB11_MASKS, full_only=True),
               Step("slider", NB11_CONTROLS, "threshold"),
               Step("dropdown", NB11_CONTROLS, "support", "box"),
               # an option only when the drawing reached the masks and the model
               Step("dropdown", NB11_CONTROLS, "support", "your drawing", full_only=True)),
        shots={NB11_CANVAS: "browser-check-11-drawing-canvas",
               NB11_CONTROLS: "browser-check-11-gallery-controls"}),
}


@dataclass
class StepResult:
    """The check after one interaction (or after Run All: step 0)."""

    number: int
    what: str
    cell: int  # 1-based, as JupyterLab shows the cells
    figures: str = "-"
    not_blank: str = "-"
    changed: str = "-"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class Result:
    """What was measured for one notebook."""

    notebook: str
    total: int = 0
    executed: int = 0
    widgets: int = 0
    rendered: int = 0
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    interaction: str = "n/a"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and not self.problems and not any(s.problems for s in self.steps)


def uses_widgets(path: Path) -> bool:
    """True if the notebook's code cells use ipywidgets, ``interact`` or ipympl."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    code = "\n".join("".join(c.get("source", "")) for c in cells if c["cell_type"] == "code")
    return bool(WIDGET_MARKERS.search(code))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A JupyterLab server of our own, isolated from the user's Jupyter config and settings."""

    def __init__(self, workdir: Path, timeout: float, extra_env: dict[str, str] | None = None
                 ) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyterlab.log"
        settings = workdir / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            target = settings / f"{plugin}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values), encoding="utf-8")
        env = {**os.environ, "MSANET_FAST": "1", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        # The kernels import this checkout's msanet_lib (their working directory is notebooks/,
        # where an editable install of another checkout would win otherwise).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
            env[var] = str(workdir / var.lower())
            (workdir / var.lower()).mkdir(exist_ok=True)
        (workdir / "jupyter_config_dir" / "jupyter_server_config.py").write_text(SERVER_CONFIG)
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={REPO}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers often run as root; Jupyter refuses otherwise
        self.log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                self.api("GET", "status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {self.log_path}")

    def api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def session(self, rel_path: str) -> dict | None:
        for s in self.api("GET", "sessions"):
            if s.get("path") == rel_path and s.get("kernel"):
                return s
        return None

    def stop(self) -> None:
        """Stop the server (it shuts its kernels down); kill it if it does not stop."""
        if self.proc.poll() is None:
            try:
                self.api("POST", "shutdown")
            except (urllib.error.URLError, ConnectionError, OSError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def cell_index(path: Path, marker: str) -> int:
    """0-based position (among all cells) of the first cell whose source contains ``marker``."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for i, c in enumerate(cells):
        if marker in "".join(c.get("source", "")):
            return i
    raise LookupError(f"no cell of {path.name} contains {marker!r} (scenario out of date?)")


def kernel_busy(lab: Lab, rel: str) -> bool:
    s = lab.session(rel)
    return s is not None and s["kernel"]["execution_state"] != "idle"


def settle(page: Any, lab: Lab, rel: str, cells: list[int], before: dict, must_change: int | None,
           timeout: float) -> dict:
    """Wait until the kernel is idle, nothing is queued, ``must_change`` differs from ``before``
    (its figures, or with ``before["prompt"]`` its prompt: the cell ran again) and the figures
    of ``cells`` stayed the same for 1.5 s; return their state."""
    deadline = time.monotonic() + timeout
    last: dict | None = None
    state: dict = {}
    while time.monotonic() < deadline:
        time.sleep(1.5)
        if kernel_busy(lab, rel) or page.evaluate(PROMPTS_JS)["queued"]:
            last = None
            continue
        state = page.evaluate(FIGURES_JS, cells)
        shown = figure_hashes(state)
        key = str(must_change)
        if must_change is not None:
            if "prompt" in before:
                if (state.get(key) or {}).get("prompt") == before["prompt"]:
                    continue
            elif shown.get(key) == before.get(key):
                continue
        if shown == last:
            return state
        last = shown
    return state


def figure_hashes(state: dict) -> dict:
    return {k: [f["hash"] for f in v["figs"]] if v else None for k, v in state.items()}


def cell_locator(page: Any, idx: int) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(idx)


def run_menu(page: Any, *items: str) -> str:
    """Click the first enabled entry of ``items`` in the Run menu; return its name."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
    for item in items:
        label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))
        entry = page.locator(".lm-Menu-item[role=menuitem]").filter(has=label).first
        if entry.count() and entry.get_attribute("aria-disabled") != "true":
            entry.click()
            return item
    enabled = page.locator(".lm-Menu-item[role=menuitem]:not(.lm-mod-disabled) .lm-Menu-itemLabel")
    names = [t.strip() for t in enabled.all_inner_texts()]
    page.keyboard.press("Escape")
    raise LookupError(f"no enabled entry {items} in the Run menu; enabled: {names}")


def do_step(page: Any, step: Step, idx: int) -> str:
    """Perform ``step`` in cell ``idx`` through the UI, as a learner would; say what was done."""
    cell = cell_locator(page, idx)
    if step.action == "slider":
        slider = cell.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text=step.control))
        handle = slider.locator(".noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        for _ in range(step.steps):
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(300)
        value = slider.locator(".widget-readout").first
        return f"slider '{step.control}' +{step.steps} -> {value.inner_text().strip()}"
    elif step.action == "dropdown":
        select = cell.locator(".widget-dropdown").filter(
            has=page.locator(".widget-label", has_text=step.control)).locator("select").first
        select.scroll_into_view_if_needed()
        options = select.locator("option")
        labels = [options.nth(i).inner_text().replace("\xa0", " ").strip()
                  for i in range(options.count())]
        current = select.locator("option:checked").inner_text().replace("\xa0", " ").strip()
        if step.value:
            target = step.value
            if target not in labels:
                raise LookupError(f"dropdown '{step.control}' has no option {target!r}: {labels}")
        else:
            if len(labels) < 2:
                raise LookupError(f"dropdown '{step.control}' has one option only")
            target = labels[(labels.index(current) + 1) % len(labels)]
        select.select_option(index=labels.index(target))
        return f"dropdown '{step.control}' -> {target!r}"
    elif step.action == "toggle":
        button = cell.locator(".widget-toggle-buttons button", has_text=step.value).first
        button.scroll_into_view_if_needed()
        button.click()
    elif step.action in ("lasso", "box"):
        canvas = cell.locator(".jupyter-matplotlib-canvas-div").first
        canvas.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        box = canvas.bounding_box()
        if box is None:
            raise LookupError("the ipympl figure is not visible")
        cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 6
        if step.action == "lasso":  # a closed loop left of the centre
            path = [(cx - 1.5 * r, cy - r), (cx - 0.2 * r, cy - r), (cx - 0.2 * r, cy + r),
                    (cx - 1.5 * r, cy + r), (cx - 1.5 * r, cy - 0.8 * r)]
        else:  # a box right of the centre, overlapping the loop a little
            path = [(cx - 0.5 * r, cy - 0.6 * r), (cx + 1.4 * r, cy + 1.2 * r)]
        page.mouse.move(*path[0])
        page.mouse.down()
        for x, y in path[1:]:
            page.mouse.move(x, y, steps=10)
            page.wait_for_timeout(100)
        page.mouse.up()
    elif step.action == "run_below":
        prompt = cell.locator(".jp-InputArea-prompt").first
        prompt.scroll_into_view_if_needed()
        prompt.click()
        # JupyterLab disables "and All Below" on the last cell
        return run_menu(page, "Run Selected Cell and All Below",
                        "Run Selected Cell and Do not Advance")
    else:
        raise ValueError(f"unknown action {step.action!r}")
    return step.describe()


def check_figures(page: Any, state: dict, expected: dict[int, int], where: int,
                  out: StepResult) -> None:
    """Every cell in ``expected`` holds exactly that many figures, none blank, cut off or
    covered by a toolbar, and no traceback; ``out.figures``/``not_blank`` describe ``where``."""
    for idx, n in expected.items():
        info = state.get(str(idx))
        if info is None:
            out.problems.append(f"cell {idx + 1} not found in the page")
            continue
        figs = info["figs"]
        if info["traceback"]:
            lines = [line for line in info["text"].strip().splitlines() if line.strip()]
            out.problems.append(f"cell {idx + 1}: traceback: {lines[-1][:200] if lines else ''}")
        if len(figs) != n:
            out.problems.append(f"cell {idx + 1} holds {len(figs)} figure(s), expected {n}")
        blank = 0
        for f in figs:
            shot = page.locator(f'[data-nbcheck-fig="{f["tag"]}"]').first.screenshot()
            reason = blank_reason(shot)
            if reason:
                blank += 1
                out.problems.append(f"cell {idx + 1}, {f['kind']} {f['width']}x{f['height']} px: "
                                    f"{reason}")
            if f["cut"] > 1:
                out.problems.append(f"cell {idx + 1}, {f['kind']}: {f['cut']} px cut off or "
                                    f"scrolled sideways by {f['cutBy']}")
            if f["covered"]:
                out.problems.append(f"cell {idx + 1}: the ipympl toolbar lies over "
                                    f"{f['covered']} px² of the figure")
        if idx == where:
            out.figures = f"{len(figs)}/{n}"
            out.not_blank = f"{len(figs) - blank}/{len(figs)}"


def run_scenario(page: Any, lab: Lab, rel: str, path: Path, scenario: Scenario, full: bool,
                 timeout: float, out_dir: Path) -> list[StepResult]:
    """Check the figures after Run All, then after each step of ``scenario``."""
    cells = {m: cell_index(path, m) for m in scenario.figures}
    expected = {cells[m]: n[1] if full else n[0] for m, n in scenario.figures.items()}
    watch = sorted(expected)
    first = min(watch)
    state = page.evaluate(FIGURES_JS, watch)
    results = [StepResult(0, "Run All Cells", first + 1)]
    check_figures(page, state, expected, first, results[0])
    for number, step in enumerate(scenario.steps, 1):
        if step.full_only and not full:
            continue
        idx = cells.get(step.cell, None)
        idx = cell_index(path, step.cell) if idx is None else idx
        changes = idx if step.changes == "=" else (
            None if step.changes is None else cell_index(path, step.changes))
        res = StepResult(number, step.describe(), idx + 1)
        results.append(res)
        start = time.monotonic()
        now = page.evaluate(FIGURES_JS, sorted({*watch, idx}))
        before = figure_hashes(now)
        rerun = step.action == "run_below" and step.changes == "="
        if rerun:  # the figure is drawn again, the same: the cell's prompt tells that it ran
            before["prompt"] = now[str(idx)]["prompt"]
        try:
            res.what = do_step(page, step, idx)
        except Exception as exc:  # a control that is missing is a failure of this step
            res.problems.append(f"could not {step.describe()}: {type(exc).__name__}: {exc}")
            continue
        state = settle(page, lab, rel, sorted({*watch, idx}), before, changes, timeout)
        res.seconds = time.monotonic() - start
        if changes is not None:
            if rerun:
                prompt = (state.get(str(idx)) or {}).get("prompt", "")
                moved = prompt != before["prompt"] and "*" not in prompt
                res.changed = f"ran again: {before['prompt']} -> {prompt}"
            else:
                moved = figure_hashes(state).get(str(changes)) != before.get(str(changes))
                res.changed = f"cell {changes + 1}: {'yes' if moved else 'NO'}"
            if not moved:
                res.problems.append(f"cell {changes + 1} did not "
                                    f"{'run again' if rerun else 'change'} within {timeout:.0f} s")
        left = page.evaluate(PROMPTS_JS)
        if left["executed"] < left["total"]:
            res.problems.append(f"{left['total'] - left['executed']} code cell(s) show no "
                                "execution count (an error stopped the run?)")
        errors = page.evaluate(INSPECT_JS)["errors"]
        for e in errors:
            res.problems.append(f"traceback in cell {e['cell']} ({e['line']!r}): {e['last']}")
        check_figures(page, state, expected, changes if changes is not None else idx, res)
    for marker, name in scenario.shots.items():
        shoot_outputs(page, cell_index(path, marker), out_dir / f"{name}.png")
    return results


def shoot_outputs(page: Any, idx: int, target: Path) -> None:
    """Screenshot of cell ``idx``'s whole output area. A taller output than the window gets a
    taller window first (JupyterLab lays the notebook out again), then the window is restored."""
    area = cell_locator(page, idx).locator(".jp-Cell-outputArea").first
    box = area.bounding_box() if area.count() else None
    if not box:
        return
    size = page.viewport_size
    if box["height"] + 250 > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": int(box["height"]) + 250})
        page.wait_for_timeout(1000)
    try:
        area.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        area.screenshot(path=str(target))
    finally:
        page.set_viewport_size(size)


def generic_scenario(page: Any, path: Path) -> Scenario | None:
    """For a notebook without a scenario: in every cell whose outputs hold sliders or dropdowns
    and a figure, move each slider one step, change each dropdown, then re-run from there; the
    cell must keep the number of figures it had after Run All."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    figures: dict[str, tuple[int, int]] = {}
    steps: list[Step] = []
    for c in page.evaluate(CONTROLS_JS):
        n = len(page.evaluate(FIGURES_JS, [c["idx"]])[str(c["idx"])]["figs"])
        if not n:
            continue
        marker = "".join(cells[c["idx"]]["source"])  # the whole source: unique enough
        figures[marker] = (n, n)
        steps += [Step("slider", marker, label) for label in c["sliders"]]
        steps += [Step("dropdown", marker, label) for label in c["dropdowns"]]
        steps.append(Step("run_below", marker))
    return Scenario(figures, tuple(steps), {}) if steps else None


def check_notebook(context: Any, lab: Lab, path: Path, out_dir: Path, run_timeout: float,
                   interact_timeout: float, do_interact: bool, full: bool) -> Result:
    rel = path.resolve().relative_to(REPO).as_posix()
    result = Result(notebook=rel)
    start = time.monotonic()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(str(e)))
    try:
        # A workspace of its own, so nothing else is reopened and the kernel is new.
        workspace = f"check-{path.stem}-{secrets.token_hex(3)}"
        page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{rel}?token={lab.token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
        # Fold the file browser away so the screenshots show the notebook.
        current_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current_tab.count():
            current_tab.first.click()
        session = wait_for(
            lambda: (s := lab.session(rel)) and s["kernel"]["execution_state"] == "idle" and s,
            120, "the notebook's kernel to start")
        kernel_id = session["kernel"]["id"]
        page.wait_for_timeout(1000)  # let JupyterLab finish connecting to the kernel
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).first.click()
        wait_for(lambda: (p := page.evaluate(PROMPTS_JS))["queued"] or p["executed"], 30,
                 "Run All Cells to start", 0.2)

        def finished() -> bool:
            s = lab.session(rel)
            if s is None or s["kernel"]["id"] != kernel_id:
                raise RuntimeError("the kernel died or was replaced during the run")
            return (page.evaluate(PROMPTS_JS)["queued"] == 0
                    and s["kernel"]["execution_state"] == "idle")

        # Finished twice, 1 s apart: a cell can start right after the previous one goes idle.
        wait_for(lambda: finished() and (time.sleep(1.0) or finished()), run_timeout,
                 "all cells to finish", 1.0)
        # Widget views render asynchronously after the kernel is idle.
        try:
            wait_for(lambda: not page.locator("text=Loading widget").count(), 30,
                     "widgets to load")
        except TimeoutError:
            pass  # reported per widget below
        try:  # ipympl draws its first frame after a round trip to the kernel
            wait_for(lambda: page.evaluate(BLANK_FIGURES_JS) == 0, 20, "ipympl figures to draw")
        except TimeoutError:
            pass  # reported per widget below
        info = page.evaluate(INSPECT_JS)
        if info is None:
            raise RuntimeError("notebook panel not found in the page")
        result.total, result.executed = info["total"], info["executed"]
        for e in info["errors"]:
            result.errors.append(f"cell {e['cell']} ({e['line']!r}): {e['last']}")
        if result.executed < result.total and not result.errors:
            first = info["unexecuted"][0]
            result.problems.append(f"{result.total - result.executed} code cell(s) did not run, "
                                   f"first: cell {first['cell']} ({first['line']!r})")
        result.widgets = len(info["widgets"]) + len(info["fallbacks"])
        for w in info["widgets"]:
            if w["problems"]:
                result.problems.append(f"widget in cell {w['cell']} ({w['line']!r}): "
                                       + "; ".join(w["problems"]))
            else:
                result.rendered += 1
                kinds = ", ".join(k.removeprefix("widget-") for k in w["kinds"]) or "other"
                result.notes.append(f"cell {w['cell']}: {kinds} ({w['size']} px)")
        for f in info["fallbacks"]:
            result.problems.append(
                f"cell {f['cell']} ({f['line']!r}) shows a static fallback ({f['mime']}) instead "
                f"of a live widget: {f['text']!r} (widget manager/extension not loaded?)")
        if result.widgets == 0 and uses_widgets(path):
            result.problems.append("no widget output found")
        scenario = SCENARIOS.get(path.stem) or (generic_scenario(page, path)
                                                 if result.rendered else None)
        if do_interact and scenario:
            result.steps = run_scenario(page, lab, rel, path, scenario, full, interact_timeout,
                                        out_dir)
            done = [s for s in result.steps if s.number]
            failed = sum(bool(s.problems) for s in done)
            result.interaction = (f"{len(done)} steps, {failed} failed" if done
                                  else "n/a (no step)")
        widget_errors = [m.splitlines()[0][:200] for m in console if "widget" in m.lower()]
        if result.problems and widget_errors:
            result.problems.append("browser console: " + " / ".join(widget_errors[:3]))
        screenshot(page, out_dir / f"{path.stem}.png")
    except Exception as exc:  # report and carry on with the next notebook
        result.problems.append(f"{type(exc).__name__}: {exc}")
        try:
            screenshot(page, out_dir / f"{path.stem}.png")
        except Exception:
            pass
    finally:
        result.seconds = time.monotonic() - start
        try:
            s = lab.session(rel)
            if s:
                lab.api("DELETE", f"sessions/{s['id']}")
        except (urllib.error.URLError, OSError):
            pass
        page.close()  # no beforeunload: the unsaved outputs are simply dropped
    return result


def screenshot(page: Any, target: Path) -> None:
    """The viewport scrolled to the first error, else the first widget; plus that output alone."""
    first = page.locator(".jp-OutputArea-output:has-text('Traceback (most recent call last)')")
    if not first.count():
        first = page.locator(".jp-Cell-outputArea .jp-OutputArea-output:has(.jupyter-widgets)")
    if first.count():
        first.first.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        first.first.screenshot(path=str(target.with_name(target.stem + "-output.png")))
    page.screenshot(path=str(target))


def markdown_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def print_table(results: list[Result]) -> None:
    rows = [("notebook", "cells run", "widgets rendered", "errors", "interaction", "time",
             "result")]
    for r in results:
        rows.append((r.notebook, f"{r.executed}/{r.total}", f"{r.rendered}/{r.widgets}",
                     str(len(r.errors)), r.interaction, f"{r.seconds:.0f} s",
                     "PASS" if r.passed else "FAIL"))
    markdown_table(rows)
    for r in results:
        for line in r.errors + r.problems:
            print(f"  {r.notebook}: {line}")
    for r in results:
        if not r.steps:
            continue
        print(f"\n{r.notebook}: figures after each interaction")
        rows = [("#", "interaction", "cell", "figures", "not blank", "changed", "time",
                 "result")]
        for st in r.steps:
            rows.append((str(st.number), st.what, str(st.cell), st.figures, st.not_blank,
                         st.changed, f"{st.seconds:.0f} s", "FAIL" if st.problems else "PASS"))
        markdown_table(rows)
        for st in r.steps:
            for line in st.problems:
                print(f"  step {st.number} ({st.what}): {line}")
    print("\nrendered widgets (cell: widget kinds):")
    for r in results:
        if r.notes:
            print(f"  {r.notebook}: " + "; ".join(r.notes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: every notebooks/*.ipynb with widgets)")
    parser.add_argument("--all", action="store_true",
                        help="check every notebooks/*.ipynb, with or without widgets")
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "msanet-browser-check",
                        help="folder for screenshots and the JupyterLab log (default: %(default)s)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                        help="Chromium executable (default: %(default)s or $CHROMIUM)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds allowed to run one notebook (default: %(default)s)")
    parser.add_argument("--interact-timeout", type=float, default=120,
                        help="seconds allowed for one interaction step to settle "
                             "(default: %(default)s)")
    parser.add_argument("--no-interact", action="store_true", help="skip the interaction check")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the kernels, e.g. MSANET_FAST=0 to check "
                             "what only full mode shows (repeatable)")
    parser.add_argument("--show", action="store_true", help="show the browser (needs a display)")
    args = parser.parse_args(argv)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: playwright is not installed; run `pip install playwright` (the Chromium "
              "given by --chromium is used, no browser download is needed)", file=sys.stderr)
        return 2
    if not (shutil.which(args.chromium) or Path(args.chromium).is_file()):
        print(f"error: Chromium not found at --chromium {args.chromium!r}; install it "
              "(Debian: apt-get install chromium) or pass its path", file=sys.stderr)
        return 2
    extra_env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --env expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra_env[key] = value
    # the kernels' mode, as msanet_lib.utils.fast_mode reads it (the Lab sets MSANET_FAST=1)
    full = extra_env.get("MSANET_FAST", "1").strip().lower() in ("", "0", "false", "no")
    paths = args.notebooks or [p for p in sorted(NOTEBOOKS.glob("*.ipynb"))
                                if args.all or uses_widgets(p)]
    for p in paths:
        if not p.is_file() or p.suffix != ".ipynb":
            print(f"error: {p} is not a notebook file", file=sys.stderr)
            return 2
        if not p.resolve().is_relative_to(REPO):
            print(f"error: {p} is outside the repository {REPO}", file=sys.stderr)
            return 2
    if not paths:
        print(f"error: no notebook in {NOTEBOOKS} uses widgets; name notebooks to check",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="nbcheck-") as tmp:
        workdir = Path(tmp)
        try:
            lab = Lab(workdir, timeout=120, extra_env=extra_env)
        except RuntimeError as exc:
            log = workdir / "jupyterlab.log"
            if log.is_file():
                shutil.copy(log, args.out / "jupyterlab.log")
                print(log.read_text(encoding="utf-8")[-2000:], file=sys.stderr)
            print(f"error: {str(exc).replace(str(log), str(args.out / log.name))}",
                  file=sys.stderr)
            return 2
        try:
            with sync_playwright() as pw:
                flags = [f for f in CHROMIUM_FLAGS if args.show is False or f != "--headless"]
                context = pw.chromium.launch_persistent_context(
                    str(workdir / "chromium-profile"), executable_path=args.chromium,
                    headless=not args.show, args=flags, viewport={"width": 1280, "height": 900})
                try:
                    for path in paths:
                        print(f"checking {path} ...", flush=True)
                        results.append(check_notebook(
                            context, lab, path, args.out, args.timeout,
                            args.interact_timeout, not args.no_interact, full))
                finally:
                    context.close()
        finally:
            lab.stop()
            shutil.copy(lab.log_path, args.out / "jupyterlab.log")
    saved = [line for line in (args.out / "jupyterlab.log").read_text().splitlines()
             if "Saving file at" in line]
    print()
    print_table(results)
    print(f"\nscreenshots and JupyterLab log: {args.out}")
    if saved:
        print("warning: JupyterLab tried to save (the server refused):\n  " + "\n  ".join(saved))
    return 0 if all(r.passed for r in results) and not saved else 1


if __name__ == "__main__":
    sys.exit(main())
