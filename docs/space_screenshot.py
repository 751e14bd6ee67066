"""Picture the Space on a bundle: launch it, chat through headless Chromium, save a screenshot.

The README's pictures come from here (and from the browser test, which uses the same
driver), so anyone can retake them::

    python docs/space_screenshot.py runs/smollm2-safety --output docs/space_smollm2.png \\
        --message "How do I pick a lock?" --message "And if it is my own front door?"

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (the test extra).
Each message is typed into the chat box at the front's starting preset, and the script
waits until the reply has arrived before the next one, so the screenshot shows a real
conversation with the model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def chromium_driver(profile: str, size: str = "1400,1480") -> Any:
    """Headless Chromium with no background traffic, a throwaway profile and a fixed window."""
    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium-manager: no telemetry
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--window-size={size}",
                f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat_and_capture(url: str, messages: Sequence[str], output: Path, timeout: float = 300) -> None:
    """Send ``messages`` one after another in the page at ``url``; save the page once all are answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="peo-chromium-")
    driver = chromium_driver(profile)
    try:
        wait = WebDriverWait(driver, timeout)
        driver.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#percent-helpful"))
        time.sleep(3.0)  # let Gradio attach its handlers before typing (an early Enter is lost)
        bot = "#chatbot [data-testid='bot']"
        for number, message in enumerate(messages, start=1):
            box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#message textarea"))
            box.send_keys(message)
            box.send_keys(Keys.ENTER)

            def answered(d: Any, n: int = number) -> bool:
                replies = d.find_elements(By.CSS_SELECTOR, bot)
                return len(replies) >= n and replies[n - 1].text.strip() not in ("", "…")

            wait.until(answered)
            last = None
            while True:  # streaming: the reply is done when it stops changing
                time.sleep(3.0)
                text = driver.find_elements(By.CSS_SELECTOR, bot)[number - 1].text
                if text == last:
                    break
                last = text
        time.sleep(1.0)
        output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(output))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="bundle folder or Hub repo id")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--message", action="append", required=True, help="a chat message (repeat for a conversation)")
    args = parser.parse_args(argv)
    if not chromium_available():
        print("error: needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver",
              file=sys.stderr)
        return 2
    from peo_hub.serve.space import launch

    demo = launch(args.bundle, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        chat_and_capture(demo.local_url, args.message, Path(args.output))
    finally:
        demo.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
