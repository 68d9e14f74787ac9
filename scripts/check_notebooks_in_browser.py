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
4. moves the first slider of an ``interact`` (else the first slider, else changes the first
   dropdown) and waits for an output (an image, a canvas, or the text of an Output/HTML widget)
   to change; on an ipympl figure it also draws a loop with the mouse and notes whether the
   canvas redrew (information only: a figure without a selector or tool need not react);
5. saves a screenshot of the first widget (or of the first error), then shuts the kernel down.

It prints a table ``notebook | cells | widgets rendered | errors | interaction | result`` and
exits with status 1 if any notebook fails, 2 if it could not run at all. JupyterLab is always
shut down. It never writes a notebook: autosave is off (settings in a temporary directory) and
the server refuses every save (a pre-save hook), so outputs never reach the stored notebooks.

Needs ``playwright`` (``pip install playwright``) and a Chromium binary; Playwright's own browser
download is not used (pass ``--chromium``, default ``/usr/bin/chromium``).

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

# What the learner sees change when a control moves: images, canvases, Output/HTML widget text.
SNAPSHOT_JS = r"""
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const hash = (s) => { let h = 5381; for (let i = 0; i < s.length; i++) h = ((h * 33) ^ s.charCodeAt(i)) >>> 0; return h + ':' + s.length; };
  const parts = [];
  nb.querySelectorAll('.jp-OutputArea-output img').forEach((i) => parts.push('img ' + hash(i.src)));
  nb.querySelectorAll('.jp-OutputArea-output canvas').forEach((c) => {
    try { parts.push('canvas ' + hash(c.toDataURL())); } catch (e) { parts.push('canvas ?'); }
  });
  nb.querySelectorAll('.widget-output, .widget-html, .widget-htmlmath').forEach(
    (e) => parts.push('text ' + hash(e.innerText || '')));
  return parts.join('|');
}
"""

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

    @property
    def passed(self) -> bool:
        return not self.errors and not self.problems


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


def page_changed(page: Any, lab: Lab, rel: str, before: Any, timeout: float) -> bool:
    """Wait until the kernel is idle and the page's output snapshot differs from ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        session = lab.session(rel)
        idle = session is None or session["kernel"]["execution_state"] == "idle"
        if idle and page.evaluate(SNAPSHOT_JS) != before:
            return True
    return False


def interact(page: Any, lab: Lab, rel: str, timeout: float) -> str:
    """Move the first slider (else change the first dropdown); say whether an output changed."""
    before = page.evaluate(SNAPSHOT_JS)
    # Controls of interact() come first: an output must change when they move.
    scope = ".jp-OutputArea-output .widget-interact"
    if not page.locator(f"{scope} .widget-slider, {scope} .widget-dropdown").count():
        scope = ".jp-OutputArea-output"
    handle = page.locator(f"{scope} .widget-slider .noUi-handle").first
    select = page.locator(f"{scope} .widget-dropdown select").first
    if handle.count():
        label = handle.locator("xpath=ancestor::*[contains(@class,'widget-slider')][1]")
        name = label.locator(".widget-label").first.inner_text().strip() or "slider"
        handle.scroll_into_view_if_needed()
        handle.focus()
        page.keyboard.press("ArrowRight")
        action = f"slider '{name}' +1 step"
    elif select.count():
        options = select.locator("option")
        if options.count() < 2:
            return "n/a (one option)"
        current = select.input_value()
        values = [options.nth(i).get_attribute("value") for i in range(options.count())]
        new = next(v for v in values if v != current)
        select.scroll_into_view_if_needed()
        select.select_option(new)
        wrapper = select.locator("xpath=ancestor::*[contains(@class,'widget-dropdown')][1]")
        name = wrapper.locator(".widget-label").first.inner_text().strip() or "dropdown"
        action = f"dropdown '{name}' changed"
    else:
        return "n/a (no slider/dropdown)"
    if page_changed(page, lab, rel, before, timeout):
        return f"{action}: output changed"
    return f"{action}: NO output changed within {timeout:.0f} s"


def drag_on_figure(page: Any, lab: Lab, rel: str, timeout: float) -> str:
    """Draw a closed loop with the mouse on the first ipympl figure; did its canvas change?

    Informative only: a figure redraws on a drag when it has a selector (lasso, box) or an
    active pan/zoom tool, so "no change" is not a failure by itself.
    """
    figure = page.locator(".jupyter-matplotlib-canvas-div").first
    figure.scroll_into_view_if_needed()
    box = figure.bounding_box()
    if box is None:
        return "ipympl figure: not visible, no drag"
    before = page.evaluate(SNAPSHOT_JS)
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 6
    path = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy)]
    page.mouse.move(*path[0])
    page.mouse.down()
    for x, y in path[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    if page_changed(page, lab, rel, before, timeout):
        return "ipympl figure: a mouse drag redrew it"
    return f"ipympl figure: a mouse drag changed nothing within {timeout:.0f} s"


def check_notebook(context: Any, lab: Lab, path: Path, out_dir: Path, run_timeout: float,
                   interact_timeout: float, do_interact: bool) -> Result:
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
        if do_interact and result.rendered:
            result.interaction = interact(page, lab, rel, interact_timeout)
            if "NO output changed" in result.interaction:
                result.problems.append(result.interaction + " (if that control is not meant to "
                                       "change an output, use --no-interact)")
            if page.locator(".jupyter-matplotlib canvas").count():
                result.notes.append(drag_on_figure(page, lab, rel, min(interact_timeout, 30)))
            info_after = page.evaluate(INSPECT_JS)
            for e in info_after["errors"][len(info["errors"]):]:
                result.errors.append(f"after interaction, cell {e['cell']}: {e['last']}")
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


def print_table(results: list[Result]) -> None:
    rows = [("notebook", "cells run", "widgets rendered", "errors", "interaction", "time",
             "result")]
    for r in results:
        rows.append((r.notebook, f"{r.executed}/{r.total}", f"{r.rendered}/{r.widgets}",
                     str(len(r.errors)), r.interaction, f"{r.seconds:.0f} s",
                     "PASS" if r.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        for line in r.errors + r.problems:
            print(f"  {r.notebook}: {line}")
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
                        help="seconds allowed for an output to change (default: %(default)s)")
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
                            args.interact_timeout, not args.no_interact))
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
