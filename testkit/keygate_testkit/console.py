"""The web console under test: keygate-control with `--console-listen`, and Debian's Chromium
driven by Playwright (from PyPI; its own browser download is never used). Every wait is
bounded: Playwright's default timeout is set on each page."""
import os
from pathlib import Path

import requests

from .control import ControlService, seed
from .paths import ROOT
from .ports import free_port
from .waiting import wait_until

CHROMIUM = os.environ.get("KEYGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The longest any one browser wait may take (a loaded 2-core machine included).
PAGE_TIMEOUT_MS = 10_000
SCOPE_DESCRIPTIONS = {
    "submit_job": "Submit jobs (POST /v1/jobs)",
    "check_status": "Read a job's status (GET /v1/jobs/{id})",
    "list_models": "List the models (GET /v1/models)",
}
# `make console-screenshots` sets this to docs/console; otherwise no screenshot is written.
SCREENSHOTS = os.environ.get("KEYGATE_CONSOLE_SCREENSHOTS")


class ConsoleService(ControlService):
    """The real control service with the console on its own port; optionally started on a
    database seeded with `seed_keys` keys (the hidden `seed` command, before the start)."""

    def __init__(self, seed_keys=0):
        self.console_port = free_port()
        self.seed_keys = seed_keys
        descriptions = [f"--scope-description={scope}={text}" for scope, text in SCOPE_DESCRIPTIONS.items()]
        # Webhooks may call the tests' receivers on 127.0.0.1.
        super().__init__(extra_args=["--console-listen", f"127.0.0.1:{self.console_port}", *descriptions,
                                     "--webhook-allow-private", "--webhook-retry-base", "1"])

    def start(self):
        if self.seed_keys and not self.db_path.exists():
            seed(self.db_path, self.seed_keys, timeout=120)
        super().start()
        wait_until(lambda: requests.get(self.console_url("/healthz"), timeout=1).ok, what="console port")
        return self

    def console_url(self, path="/console/"):
        return f"http://127.0.0.1:{self.console_port}{path}"

    def create_token(self, role, name=None, team=None):
        body = {"name": name or f"console-{role}", "role": role}
        if team:
            body["team"] = team
        response = self.admin("POST", "/v1/tokens", json=body)
        assert response.status_code == 201, response.text
        return response.json()["token"]


class Browser:
    """One headless Chromium; a fresh context (no storage) per page."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )

    def new_page(self):
        context = self._browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.new_page()
        page.problems = []
        page.requested = []
        page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.on("request", lambda request: page.requested.append(request))
        return page

    def close(self):
        self._browser.close()
        self._playwright.stop()


def sign_in(page, service, token):
    page.goto(service.console_url())
    page.get_by_label("Management token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def screenshot(page, name):
    """Writes docs/console/<name>.png when refreshing the documentation's screenshots."""
    if SCREENSHOTS:
        directory = ROOT / SCREENSHOTS if not Path(SCREENSHOTS).is_absolute() else Path(SCREENSHOTS)
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
