"""The console's Proxies page in a real browser (Debian's Chromium through Playwright): two real
Envoys that enrolled with an enrollment token are listed live with their labels, one is revoked
after a confirmation naming it (and the control service refuses it from then on), and a team's
token is not offered the page."""

import pytest
import requests

from keygate_testkit.console import ConsoleService, screenshot, sign_in
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.waiting import wait_until


@pytest.fixture(scope="module")
def fleet(upstream):
    service = ConsoleService().start()
    made = service.admin("POST", "/v1/enrollment-tokens", json={"name": "console fleet"})
    assert made.status_code == 201, made.text
    config = plugin_config(control={"long_poll_wait": "5s"})
    del config["control"]["token"]
    config["control"]["enrollment_token"] = made.json()["token"]
    config["control"]["proxy_labels"] = {"zone": "eu-west-1a"}
    envoys = [Envoy(upstream.port, service.port, config, concurrency=1, extra_args=["--service-node", name])
              for name in ("edge-a", "edge-b")]
    try:
        yield service, envoys
    finally:
        for envoy in envoys:
            envoy.close()
        service.stop()


def listed(service):
    return {proxy["name"]: proxy for proxy in service.admin("GET", "/v1/proxies").json()["proxies"]}


def test_the_fleet_is_listed_and_a_proxy_revoked_after_a_confirmation(fleet, page):
    service, _ = fleet
    wait_until(lambda: all(listed(service).get(name, {}).get("state") == "live" for name in ("edge-a", "edge-b")),
               timeout=20, what="both Envoys enrolled and seen")
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("link", name="Proxies").click()
    rows = page.locator("table.proxies tbody tr")
    rows.first.wait_for()
    assert rows.count() == 2
    row = page.locator("table.proxies tbody tr", has_text="edge-a")
    assert row.get_attribute("data-health") == "live"
    assert "zone=eu-west-1a" in row.inner_text() and "current" in row.inner_text()
    screenshot(page, "proxies")

    page.get_by_role("button", name="Revoke proxy edge-a").click()
    dialog = page.get_by_role("dialog")
    assert "edge-a" in dialog.inner_text()
    dialog.get_by_role("button", name="Revoke").click()
    page.get_by_role("button", name="Revoke proxy edge-a").wait_for(state="detached")
    assert page.locator("table.proxies tbody tr", has_text="edge-a").get_attribute("data-health") == "revoked"
    assert listed(service)["edge-a"]["state"] == "revoked"
    assert listed(service)["edge-b"]["state"] == "live"
    assert page.problems == []


def test_a_team_token_is_not_offered_the_fleet(fleet, page):
    service, _ = fleet
    token = service.create_token("admin", team="acme")
    sign_in(page, service, token)
    assert page.get_by_role("link", name="Proxies").count() == 0
    assert requests.get(service.url("/v1/proxies"), headers={"Authorization": f"Bearer {token}"},
                        timeout=5).status_code == 403
