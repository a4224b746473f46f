"""The console's Teams and Webhooks pages in a real browser (Debian's Chromium through
Playwright) against the real control service and a real Envoy: an operator creates a team with a
shared quota and sees its keys' requests counted against it; a team token reads its team but is
offered no changes; an endpoint is added (its secret shown once, then verified with the Standard
Webhooks library on a test delivery) and its delivery log shows the delivery."""

import re

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from keygate_testkit.console import ConsoleService, screenshot, sign_in
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.waiting import wait_until
from keygate_testkit.webhooks import Receiver


@pytest.fixture(scope="module")
def service():
    control = ConsoleService().start()
    yield control
    control.stop()


@pytest.fixture(scope="module")
def proxy(upstream, service):
    config = plugin_config(control={"long_poll_wait": "10s"}, usage={"report_interval": "1s"})
    envoy = Envoy(upstream.port, service.port, config)
    yield envoy
    envoy.close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_an_operator_creates_a_team_and_watches_its_shared_quota(service, proxy, page):
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("link", name="Teams").click()
    page.get_by_role("button", name="Create team").click()
    page.get_by_label("Name").fill("northwind")
    page.get_by_label("Daily quota").fill("0")
    page.get_by_role("button", name="Create team").last.click()
    page.get_by_text(re.compile(r"^per_day: ")).wait_for()
    page.get_by_label("Daily quota").fill("100")
    page.get_by_label("Plan").select_option("pro")
    page.get_by_role("button", name="Create team").last.click()
    page.get_by_role("heading", name="Team northwind").wait_for()
    secrets = [service.create_key(name=f"nw-{index}", team="northwind", scopes=["list_models"])["key"] for index in range(2)]
    for secret in secrets:
        proxy.wait_for_status("/v1/models", secret, 200)
    for secret in secrets:
        assert proxy.get("/v1/models", secret).status_code == 200

    def counted():
        page.reload()
        text = page.get_by_test_id("team-today").text_content(timeout=5000) or ""
        return text if text.startswith("4 of 100") else None

    wait_until(counted, timeout=20, what="the team's 4 requests against its quota of 100")
    page.get_by_role("link", name="nw-0").wait_for()
    screenshot(page, "team")
    page.get_by_role("link", name="← Teams").click()
    page.get_by_role("row", name=re.compile("northwind.*pro.*4 of 100")).wait_for()
    screenshot(page, "teams")
    # A team token sees its own team and is offered no changes; the API refuses them anyway.
    viewer = service.create_token("admin", name="northwind-admin", team="northwind")
    other = page.context.new_page()
    sign_in(other, service, viewer)
    other.get_by_role("link", name="Teams").click()
    other.get_by_role("link", name="northwind").click()
    other.get_by_role("heading", name="Team northwind").wait_for()
    assert other.get_by_role("button", name="Edit plan and quotas").count() == 0
    assert other.get_by_role("button", name="Create team").count() == 0


def test_an_endpoint_is_added_tested_and_its_deliveries_shown(service, page, receiver):
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_label("URL").fill("ftp://example.com/")
    page.get_by_role("button", name="Add endpoint").last.click()
    page.get_by_text(re.compile(r"^url: ")).wait_for()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label(re.compile("key.revoked")).check()
    page.get_by_role("button", name="Add endpoint").last.click()
    secret = page.get_by_label("Secret", exact=True).input_value()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Done").click()
    card = page.get_by_role("article", name=f"Webhook {receiver.url}")
    card.get_by_role("button", name="Send test event").click()
    card.get_by_text(re.compile(r"^Test event msg_\w+ queued\.$")).wait_for()
    delivered = wait_until(lambda: receiver.deliveries, timeout=15, what="the test delivery")[0]
    body = Verifier(secret).verify(delivered["body"], delivered["headers"])
    assert body["type"] == "webhook.test"
    card.get_by_role("button", name="Deliveries").click()

    def logged():
        card.get_by_role("button", name="Refresh").click()
        return card.get_by_role("cell", name=re.compile(r"^delivered \(1 try, last answer 204\)$")).count() > 0

    wait_until(logged, timeout=15, what="the delivery in the log")
    screenshot(page, "webhooks")
    assert page.get_by_text(secret).count() == 0, "the secret is shown once only"
