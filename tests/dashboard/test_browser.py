"""The instructor dashboard in a real browser: Voila serves it, headless Chromium drives it.

Voila runs `grading/dashboard/dashboard.ipynb` over the round trip's gradebook
(conftest) on a free loopback port; playwright drives Debian's Chromium
(/usr/bin/chromium; playwright's own browser download is not used). Checks: the
page loads, the plots render (images with a non-zero size that decoded), a
filter changes the table, and the CSV export downloads exactly the filtered rows.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from dashboard.serve import free_port, voila_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    SKIP_REASON = None if CHROMIUM else (
        "no chromium on PATH; `make install` runs `apt-get install chromium` where it can (root, Debian)")
except ImportError as exc:  # pragma: no cover - depends on the machine
    SKIP_REASON = f"playwright is not installed ({exc}); `make install` installs it (extra `test`)"

pytestmark = [
    pytest.mark.slow, pytest.mark.notebook,
    pytest.mark.timeout(900),  # includes the shared round trip (conftest) when this file runs first
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
# Root needs --no-sandbox; the rest keep a headless browser off the (absent) network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 120_000  # first load starts a kernel and reads the gradebook; slow on a busy 2-core box


@pytest.fixture(scope="module")
def voila_url(course, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("voila") / "voila.log"
    env = dict(os.environ, INFERLAB_GRADEBOOK=str(course.gradebook_path))
    with log_path.open("w") as log:
        proc = subprocess.Popen(voila_command(port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"voila exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:  # listening is enough: a GET of the page would start a kernel
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"voila did not answer on {url} within 60 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, log_path
    os.killpg(proc.pid, signal.SIGTERM)  # voila shuts its kernels down on SIGTERM
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _image_ok(page, selector: str) -> str:
    """The image's src once it has decoded with a non-zero size (fails otherwise)."""
    decoded = f"() => {{ const el = document.querySelector({selector!r}); return el && el.complete && el.naturalWidth > 0; }}"
    page.wait_for_function(decoded, timeout=30_000)
    img = page.locator(selector)
    box = img.bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0, (selector, box)
    return img.get_attribute("src")


def test_dashboard_loads_plots_filters_and_exports(graded, voila_url, tmp_path):
    url, log_path = voila_url
    result, _ = graded
    num_questions, num_students = len(result.max_points), len(result.scores)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1300, "height": 1600})
            messages = []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text[:300]}") if m.type == "error" else None)
            page.goto(url, timeout=PAGE_TIMEOUT_MS)
            try:
                page.wait_for_selector("#scores-table", timeout=PAGE_TIMEOUT_MS)
            except PlaywrightTimeout:
                pytest.fail(f"the page did not show the scores table. Page text:\n{page.inner_text('body')[:2000]}"
                            "\nBrowser errors:\n" + "\n".join(messages[-10:])
                            + f"\nVoila log:\n{log_path.read_text()[-3000:]}")
            for table in ("#failing-table", "#risk-table", "#times-table", "#mutants-table"):
                assert page.locator(table).count() == 1, table
            assert page.locator("#scores-table tbody tr").count() == num_students * num_questions
            before = _image_ok(page, "img.dash-distributions")
            _image_ok(page, "img.dash-times")

            page.locator(".dash-student-filter select").select_option(label="solution")
            page.wait_for_function("document.querySelector('#dash-status').textContent.includes('students solution')",
                                   timeout=30_000)
            page.wait_for_function(f"document.querySelectorAll('#scores-table tbody tr').length == {num_questions}",
                                   timeout=30_000)
            shown = page.locator("#scores-table tbody tr td:first-child").all_inner_texts()
            assert shown == ["solution"] * num_questions
            # The plots follow the filter: a new image (ipywidgets gives each new value a new blob URL).
            page.wait_for_function(f"document.querySelector('img.dash-distributions').src != {before!r}",
                                   timeout=30_000)
            _image_ok(page, "img.dash-distributions")

            with page.expect_download(timeout=30_000) as download:
                page.locator("a.dash-download").click()
            saved = Path(tmp_path / download.value.suggested_filename)
            download.value.save_as(saved)
        finally:
            browser.close()
    rows = pd.read_csv(saved)
    assert set(rows["student"]) == {"solution"} and len(rows) == num_questions
    assert dict(zip(rows["question"], rows["score"])) == result.scores["solution"]
    assert dict(zip(rows["question"], rows["max_score"])) == result.max_points
