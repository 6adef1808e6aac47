"""The page at GET / in headless Chromium: paste a text and a question, pick a pipeline, read the counts.

Needs Chromium and its driver from the system's packages (apt-get install chromium chromium-driver) and
selenium (the dev extra); skipped with the reason printed when they are missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TEXT = ("The orchard has forty apple trees. The farmer sells cider in autumn. A red tractor stands in the barn. "
        "The well behind the house is twelve metres deep. Bees live in six hives near the hedge. ") * 3


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver are missing: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install 'tokenzip[dev]'")
    profile = tempfile.mkdtemp(prefix="tokenzip-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_page_shows_what_each_stage_kept(browser: Any, tiny_server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{tiny_server}/")
    assert "tiny-llama" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "text").send_keys(TEXT)
    browser.find_element(By.ID, "question").send_keys("How deep is the well?")
    Select(browser.find_element(By.ID, "preset")).select_by_value("prompt:extractive@0.5 | kv:kvzip@0.5")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                      in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
        browser.find_element(By.ID, "status").text
    prompt_row = browser.find_element(By.CSS_SELECTOR, "tr.stage-prompt")
    kv_row = browser.find_element(By.CSS_SELECTOR, "tr.stage-kv")
    p_in, p_out = (int(prompt_row.find_element(By.CLASS_NAME, c).text.split()[0]) for c in ("in", "out"))
    k_in, k_out = (int(kv_row.find_element(By.CLASS_NAME, c).text.split()[0]) for c in ("in", "out"))
    assert 0 < p_out < p_in and 0 < k_out < k_in
    kept = "".join(m.text for m in browser.find_elements(By.CSS_SELECTOR, "#result mark"))
    dropped = browser.find_elements(By.CSS_SELECTOR, "#result .dropped")
    assert kept and dropped and "kv:kvzip@0.5" in browser.find_element(By.ID, "status").text
    # The kv stage, token by token: a heat map whose mean is the stage's share of entries kept (the text it shows
    # is what the kv stage read: the prompt stage's output, which the prompt stage's panel shows kept).
    assert browser.find_element(By.ID, "kv-section").is_displayed()
    tokens = browser.find_elements(By.CSS_SELECTOR, "#kv .tok")
    fractions = [float(t.get_attribute("data-kept")) for t in tokens]
    assert min(fractions) < 0.5 < max(fractions) and len(set(fractions)) >= 3  # kept per layer and head
    assert abs(sum(fractions) / len(fractions) - k_out / k_in) < 0.05  # special tokens are not shown
    # The answers from the compressed and from the whole context, side by side.
    assert browser.find_element(By.ID, "answers-section").is_displayed()
    assert browser.find_element(By.ID, "answer-compressed").is_displayed()
    assert browser.find_element(By.ID, "answer-uncompressed").is_displayed()
    browser.save_screenshot(str(tmp_path / "page.png"))
    # A bad spec shows the server's message instead of counts.
    browser.find_element(By.ID, "spec").send_keys("kv:snapkv@1.5")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "error")
    assert "ratio" in browser.find_element(By.ID, "status").text
