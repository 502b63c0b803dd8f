"""JupyterLab really serves the data-exploration notebook: run it in headless Chromium, move the viewer's slider.

Makes the smoke profile's data (phantom, cache, split) in a temporary project root, starts
`jupyter lab` from the project environment on a free localhost port (token, no browser,
temporary root / config / runtime / settings folders), opens notebooks/01_data_exploration.ipynb in
Debian's Chromium through playwright, runs all cells from the Run menu, waits for the
SliceViewer widget (slider and image), moves the slider with the keyboard and checks that the
image changes. Screenshots (before / after) go to $SEGAN_TEST_ARTIFACTS or runs/test-artifacts/.

Needs /usr/bin/chromium (scripts/install_browser.sh) and the playwright package (pinned in
requirements.lock; its own browser download is not used); skipped without them.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # JupyterLab, Chromium and a notebook run

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_data_exploration.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VIEWER = ".segan-slice-viewer"  # CSS class SliceViewer puts on its top-level box


def _artifact_dir() -> Path:
    folder = Path(os.environ.get("SEGAN_TEST_ARTIFACTS") or ROOT / "runs" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # localhost only
        return response.read()


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut the server down: ask politely (which also stops its kernels), then end the process group,
    then any kernel process of the server still alive (kernels run in their own sessions)."""
    children = []
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        pass
    try:
        request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=5).read()
        proc.wait(timeout=15)
    except Exception:
        pass
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
    for child in children:
        try:
            child.wait(timeout=5)
        except Exception:
            try:
                child.kill()
            except Exception:
                pass


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A running JupyterLab serving a temporary copy of the data-exploration notebook, over a project root
    holding the smoke profile's phantom, cache and split; yields (base URL, token, log)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install it with scripts/install_browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements.lock)")
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.skip(f"no jupyter next to {sys.executable}")

    tmp = tmp_path_factory.mktemp("jupyterlab")
    project = tmp / "project"
    subprocess.run([sys.executable, "-m", "segan_lib.cli", "study", "--profile", "smoke",
                    "--only", "phantom,preprocess,split"], env=dict(os.environ, SEGAN_ROOT=str(project)),
                   check=True, capture_output=True)
    root = tmp / "notebooks"
    root.mkdir()
    shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)
    config = tmp / "config"
    # start the notebook's kernel without asking; no news / update notifications over the page
    user_settings = {
        ("notebook-extension", "tracker"): {"autoStartDefaultKernel": True},
        ("apputils-extension", "notification"): {"checkForUpdates": False, "fetchNews": "false"},
    }
    for (package, plugin), values in user_settings.items():
        folder = config / "lab" / "user-settings" / "@jupyterlab" / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "JPY_")) and k not in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}
    env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_DATA_DIR=str(tmp / "data"), IPYTHONDIR=str(tmp / "ipython"),
               MPLCONFIGDIR=str(tmp / "matplotlib"), TF_CPP_MIN_LOG_LEVEL="2", SEGAN_ROOT=str(project))
    port = _free_port()
    token = base64.b16encode(os.urandom(16)).decode().lower()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "jupyterlab.log"
    log = open(log_path, "wb")
    command = [
        str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no package-index queries
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
        command.append("--allow-root")
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 120 s:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield base, token, log_path
    finally:
        _stop(proc, base, token)
        log.close()


def _image_bytes(page) -> bytes:
    """The bytes behind the viewer's <img> (a blob: URL the widget made from the PNG)."""
    encoded = page.evaluate(
        """async (selector) => {
            const img = document.querySelector(selector);
            const data = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
            let text = '';
            for (let i = 0; i < data.length; i++) text += String.fromCharCode(data[i]);
            return btoa(text);
        }""",
        f"{VIEWER} img",
    )
    return base64.b64decode(encoded)


def _accept_kernel_dialog(page, wait_ms: int = 3000) -> None:
    """Accept a 'Select Kernel' dialog should JupyterLab still ask (the preferred kernel is python3)."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(state="visible", timeout=wait_ms)
    except Exception:
        return
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


def test_viewer_runs_in_jupyterlab(jupyter_lab):
    from playwright.sync_api import sync_playwright

    base, token, log_path = jupyter_lab
    artifacts = _artifact_dir()
    started = time.monotonic()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(log_path.parent / "chromium-profile"),  # fresh profile each run
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(90_000)
        console = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="visible")
            _accept_kernel_dialog(page)
            # the kernel is up when the toolbar's indicator says idle
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   state="attached", timeout=120_000)

            # Run > Run All Cells
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item:visible", has_text="Run All Cells").first.click()

            viewer = page.locator(VIEWER)
            viewer.wait_for(state="visible", timeout=120_000)
            slider = viewer.locator(".widget-slider").first
            slider.wait_for(state="visible")
            page.wait_for_function(
                "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
                arg=f"{VIEWER} img")
            # the live widget is shown, not the still PNG of the same output
            viewer_cell = page.locator(".jp-CodeCell", has=viewer)
            assert viewer_cell.locator(".jp-RenderedImage").count() == 0
            # ... while the plot_slice cell above shows its figure as a plain PNG
            assert page.locator(".jp-RenderedImage img").count() >= 1

            before = _image_bytes(page)
            assert before.startswith(PNG_MAGIC)
            readout = viewer.locator(".widget-readout").first
            index_before = int(readout.inner_text().strip())
            viewer.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "browser_viewer_before.png"))
            viewer.screenshot(path=str(artifacts / "browser_viewer_widget_before.png"))

            # move the slider: focus its handle, press the right arrow. The image's src is read
            # before the key press: read after it, a fast kernel may already have swapped the image
            # and the wait below would then wait for a second change that never comes.
            src_before = viewer.locator("img").first.get_attribute("src")
            handle = viewer.locator(".widget-slider .noUi-handle").first
            for _attempt in range(3):  # a key press sent before the handle takes focus is lost
                handle.focus()
                handle.press("ArrowRight")
                try:
                    page.wait_for_function(
                        "([selector, text]) => document.querySelector(selector).innerText.trim() !== text",
                        arg=[f"{VIEWER} .widget-readout", str(index_before)], timeout=10_000)
                    break
                except Exception:
                    continue
            page.wait_for_function(
                """([selector, src]) => { const i = document.querySelector(selector);
                     return i && i.src !== src && i.complete && i.naturalWidth > 0; }""",
                arg=[f"{VIEWER} img", src_before],
                timeout=60_000)
            after = _image_bytes(page)
            assert after.startswith(PNG_MAGIC)
            assert after != before
            assert int(readout.inner_text().strip()) == index_before + 1
            page.screenshot(path=str(artifacts / "browser_viewer_after.png"))
            viewer.screenshot(path=str(artifacts / "browser_viewer_widget_after.png"))
        except Exception:
            try:
                page.screenshot(path=str(artifacts / "browser_viewer_failure.png"))
            except Exception:
                pass
            (artifacts / "browser_console.log").write_text("\n".join(console))
            shutil.copy2(log_path, artifacts / "browser_jupyterlab.log")
            raise
        finally:
            context.close()
    print(f"browser part took {time.monotonic() - started:.1f} s")
