"""The web console in a real browser (Debian's Chromium through Playwright) against the real
control service and a real Envoy: sign in, create a key and use its secret through Envoy,
deactivate it, watch its usage, role-aware pages, a refused token, and a 10,000-key list read
a page at a time. `make console-screenshots` keeps the screenshots of docs/console.md."""
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from keygate_testkit.console import ConsoleService, screenshot, sign_in
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.waiting import wait_until
from keygate_testkit.key_format import is_checksummed_key

TOKEN_ITEM = "keygate.console.token"


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


def assert_clean(page, *secrets, refused=()):
    """No script error or CSP violation, no request to another host, and no secret in any URL
    the page requested.
    `refused`: HTTP statuses the test provoked on purpose, which Chromium logs as errors."""
    expected = [f"the server responded with a status of {status} " for status in refused]
    assert [problem for problem in page.problems if not any(text in problem for text in expected)] == []
    assert {urlparse(request.url).hostname for request in page.requested} == {"127.0.0.1"}, "nothing from elsewhere"
    for request in page.requested:
        for secret in secrets:
            assert secret not in request.url
    assert page.context.cookies() == []


def test_assets_have_content_types_caching_and_a_strict_policy(service):
    index = requests.get(service.console_url(), timeout=5)
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert index.headers["cache-control"] == "no-cache"
    policy = index.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert index.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in index.text and "style=" not in index.text
    (script,) = re.findall(r'src="(/console/assets/[^"]+\.js)"', index.text)
    (style,) = re.findall(r'href="(/console/assets/[^"]+\.css)"', index.text)
    for path, media_type in ((script, "text/javascript"), (style, "text/css")):
        asset = requests.get(service.console_url(path), timeout=5)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media_type)
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = requests.get(service.console_url("/console/assets/nothing.js"), timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert requests.get(service.console_url("/console"), allow_redirects=False, timeout=5).headers["location"] == "/console/"


def test_create_a_key_use_it_through_envoy_then_deactivate_it(service, proxy, page):
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("button", name="Create key").click()
    # The API's own messages, beside the fields they name.
    page.get_by_role("button", name="Create key").click()
    page.locator("#name-error").filter(has_text=re.compile(r"^name: ")).wait_for()
    assert page.get_by_label("Name").get_attribute("aria-describedby") == "name-error"
    page.get_by_label("Name").fill("console checkout")
    page.get_by_label("Requests per minute").fill("-5")
    page.get_by_role("button", name="Create key").click()
    page.locator("#limits-per_minute-error").filter(has_text=re.compile(r"^limits\.per_minute: ")).wait_for()
    assert page.locator("#name-error").count() == 0
    page.get_by_label("Requests per minute").fill("")
    page.get_by_label("Team").fill("payments")
    page.get_by_role("checkbox", name=re.compile("list_models")).check()
    page.get_by_text("List the models (GET /v1/models)").wait_for()
    ips = page.get_by_label("Allowed IPs")
    ips.fill("10.0.0.0/33")
    page.get_by_text('allowed_ips[0]: invalid IP or CIDR "10.0.0.0/33"').wait_for()
    ips.fill("127.0.0.1\n::1")
    screenshot(page, "create-key")
    page.get_by_role("button", name="Create key").click()

    secret = page.get_by_label("Secret", exact=True).input_value()
    assert re.fullmatch(r"pk_live_[0-9A-Za-z]{46}", secret) and is_checksummed_key(secret)
    page.get_by_text("it will not be shown again").wait_for()
    page.get_by_role("button", name="Copy").wait_for()
    screenshot(page, "secret-once")

    assert proxy.wait_for_status("/v1/models", secret, 200, timeout=5).status_code == 200
    assert proxy.get("/v1/jobs", secret, method="POST").status_code == 403

    page.get_by_role("button", name="Done").click()
    page.get_by_role("heading", name="console checkout", exact=True).wait_for()
    assert page.get_by_label("Secret", exact=True).count() == 0, "the secret is shown once only"
    started = time.monotonic()
    page.get_by_role("button", name="Deactivate").click()
    denied = proxy.wait_for_status("/v1/models", secret, 401, timeout=3)
    elapsed = time.monotonic() - started
    assert denied.json()["error"]["code"] == "API_KEY_INACTIVE"
    assert elapsed < 1.5, f"deactivation reached Envoy after {elapsed:.2f}s"
    page.get_by_role("button", name="Activate").wait_for()
    assert_clean(page, secret, ADMIN_TOKEN, refused=[400])
    assert secret not in service.log_text() and ADMIN_TOKEN not in service.log_text()


def test_the_key_page_shows_the_requests_envoy_reported(service, proxy, page):
    created = service.create_key(name="console usage", scopes=["list_models"])
    secret, key_id = created["key"], created["id"]
    proxy.wait_for_status("/v1/models", secret, 200, timeout=5)
    allowed, denied = 1, 0
    for _ in range(6):
        assert proxy.get("/v1/models", secret).status_code == 200
        allowed += 1
    for _ in range(2):
        assert proxy.get("/v1/jobs", secret, method="POST").status_code == 403
        denied += 1

    def reported():
        totals = service.admin("GET", f"/v1/keys/{key_id}/usage").json()["totals"]
        return totals["allowed"] == allowed and totals["denied"].get("OPERATION_NOT_ALLOWED") == denied

    wait_until(reported, timeout=10, what="the usage report")
    sign_in(page, service, ADMIN_TOKEN)
    page.goto(service.console_url(f"/console/#/keys/{key_id}"))
    page.locator('td[data-outcome="ALLOWED"]').filter(has_text=str(allowed)).wait_for()
    assert page.locator('td[data-outcome="OPERATION_NOT_ALLOWED"]').inner_text() == str(denied)
    assert page.locator('td[data-outcome="TOTAL"]').inner_text() == str(allowed + denied)
    chart = page.get_by_role("img", name=re.compile("Requests, last 24 h"))
    assert f"{allowed + denied} requests ({allowed} allowed, {denied} scope not allowed)" in chart.get_attribute("aria-label")
    assert chart.locator("rect.outcome-allowed").count() >= 1
    assert page.get_by_role("table", name="Recent denials by code").get_by_text("OPERATION_NOT_ALLOWED").count() == 1
    page.get_by_role("table").filter(has_text="key.create").wait_for()
    screenshot(page, "key-page")
    page.get_by_role("button", name="7 d").click()
    page.get_by_role("img", name=re.compile(f"Requests, last 7 d: {allowed + denied} requests")).wait_for()
    page.get_by_role("link", name="Keys", exact=True).click()
    page.get_by_role("img", name=re.compile(f"console usage, last 24 hours: {allowed} allowed, {denied} denied")).wait_for()
    screenshot(page, "keys")
    assert_clean(page, secret, ADMIN_TOKEN)


def test_the_key_page_shows_upstream_answers_response_times_routes_events_and_headroom(service, proxy, page):
    created = service.create_key(name="console insight", scopes=["list_models"], plan="free")
    secret, key_id = created["key"], created["id"]
    proxy.wait_for_status("/v1/models", secret, 200, timeout=5)
    assert proxy.get("/v1/models", secret, headers={"x-demo-delay-ms": "300"}).status_code == 200
    failed = proxy.get("/v1/models", secret, headers={"x-demo-status": "503", "x-request-id": "console-503"})
    assert failed.status_code == 503
    assert proxy.get("/v1/jobs", secret, method="POST", headers={"x-request-id": "console-403"}).status_code == 403

    def reported():
        totals = service.admin("GET", f"/v1/keys/{key_id}/usage").json()["totals"]
        # Every request counted and what became of each: workers report on their own ticks.
        upstream = totals["upstream"]
        return (upstream["5xx"] == 1 and upstream["2xx"] == 2 and totals["allowed"] == 3
                and totals["denied"].get("OPERATION_NOT_ALLOWED") == 1)

    wait_until(reported, timeout=10, what="the usage report")
    sign_in(page, service, ADMIN_TOKEN)
    page.goto(service.console_url(f"/console/#/keys/{key_id}"))
    upstream = page.get_by_role("table", name="What the upstream answered (allowed requests)")
    upstream.locator('td[data-class="5xx"]').filter(has_text="1").wait_for()
    assert upstream.locator('td[data-class="2xx"]').inner_text() == "2"
    times = page.get_by_role("figure", name="Response time (p50 / p95 / p99, ms)")
    whole = times.get_by_role("row", name=re.compile("Whole range"))
    assert re.search(r"30\d ms", whole.inner_text()), whole.inner_text()
    routes = page.get_by_role("table", name="Requests by route")
    assert routes.get_by_role("row", name=re.compile("list_models")).count() == 1
    assert routes.get_by_role("row", name=re.compile("submit_job")).count() == 1
    addresses = page.get_by_role("region", name="Client addresses")
    assert "127.0.0.1" in addresses.inner_text()
    events = page.get_by_role("table", name="Denials and failed upstream answers, newest first")
    events.get_by_text("console-503").wait_for()
    assert events.get_by_text("console-403").count() == 1
    page.get_by_label("Outcome").select_option("denied")
    events.get_by_text("console-503").wait_for(state="detached")
    assert events.get_by_text("console-403").count() == 1
    headroom = page.get_by_role("region", name="Headroom")
    minute = headroom.get_by_role("meter", name="Requests this minute")
    assert minute.get_attribute("max") == "60"
    assert "of 60 used" in headroom.inner_text() and "Daily quota" in headroom.inner_text()
    screenshot(page, "key-insight")
    assert_clean(page, secret, ADMIN_TOKEN)


def test_a_viewer_is_offered_no_changes_and_the_api_refuses_them(service, page):
    key = service.create_key(name="viewed")
    viewer = service.create_token("viewer")
    sign_in(page, service, viewer)
    page.get_by_role("link", name="viewed").wait_for()
    assert page.get_by_role("button", name="Create key").count() == 0
    assert page.get_by_role("link", name="Tokens").count() == 0
    page.get_by_role("link", name="viewed").click()
    page.get_by_role("heading", name="Usage").wait_for()
    for action in ("Rotate", "Deactivate", "Delete", "Save changes"):
        assert page.get_by_role("button", name=action).count() == 0
    assert page.get_by_label("Name").is_disabled()
    forced = page.evaluate(
        """async ([item, id]) => {
            const token = sessionStorage.getItem(item);
            const answer = await fetch(`/v1/keys/${id}`, {method: 'PATCH',
                headers: {'Authorization': `Bearer ${token}`, 'Content-Type': 'application/json'},
                body: JSON.stringify({active: false})});
            return [answer.status, (await answer.json()).error.code];
        }""",
        [TOKEN_ITEM, key["id"]],
    )
    assert forced == [403, "FORBIDDEN"]
    assert service.admin("GET", f"/v1/keys/{key['id']}").json()["active"] is True
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.evaluate("item => sessionStorage.getItem(item)", TOKEN_ITEM) is None
    assert_clean(page, viewer, refused=[403])


def test_a_wrong_token_gets_a_clear_sign_in_error(service, page):
    page.goto(service.console_url())
    page.get_by_label("Management token").fill("kgt_not-a-real-token")
    page.get_by_label("Management token").press("Enter")  # the keyboard signs in too
    page.get_by_role("alert").filter(has_text="Sign-in failed: the service does not accept this token").wait_for()
    assert page.get_by_role("button", name="Sign out").count() == 0
    assert page.evaluate("item => sessionStorage.getItem(item)", TOKEN_ITEM) is None
    screenshot(page, "sign-in-refused")
    assert_clean(page, "kgt_not-a-real-token", refused=[401])


def test_plans_explain_a_refused_delete_and_tokens_are_created_once(service, page):
    service.create_key(name="on gold", plan="free")
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("link", name="Plans").click()
    page.get_by_role("button", name="Create plan").click()
    page.get_by_label("Name").fill("gold")
    page.get_by_label("Per minute").fill("0")
    page.get_by_role("button", name="Create plan").last.click()
    page.get_by_text(re.compile(r"^per_minute: ")).wait_for()
    page.get_by_label("Per minute").fill("500")
    page.get_by_role("button", name="Create plan").last.click()
    page.get_by_role("row", name=re.compile("gold")).wait_for()
    screenshot(page, "plans")
    page.get_by_role("button", name="Delete plan free").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_role("alert").filter(has_text="Plan free was not deleted").filter(has_text="Move those keys").wait_for()

    page.get_by_role("link", name="Team usage").click()
    page.get_by_role("img", name=re.compile("Requests, last 24 h")).wait_for()
    page.get_by_label("Teams").fill("payments, search")
    page.get_by_role("button", name="Show").click()
    for team in ("payments", "search"):
        page.get_by_role("region", name=f"Team {team}").get_by_role("img", name=re.compile("Requests, last 24 h")).wait_for()
    screenshot(page, "team-usage")

    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name").fill("console-made")
    page.get_by_label("Role").select_option("editor")
    page.get_by_role("button", name="Create token").click()
    made = page.get_by_label("Secret", exact=True).input_value()
    assert made.startswith("kgt_")
    assert requests.get(service.url("/v1/session"), headers={"Authorization": f"Bearer {made}"}, timeout=5).json()["role"] == "editor"
    page.get_by_role("button", name="Done").click()
    screenshot(page, "tokens")
    page.get_by_role("button", name="Revoke token console-made").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    page.get_by_role("button", name="Revoke token console-made").wait_for(state="detached")
    wait_until(lambda: requests.get(service.url("/v1/session"), headers={"Authorization": f"Bearer {made}"}, timeout=5).status_code == 401,
               timeout=5, what="the revoked token refused")
    assert_clean(page, made, ADMIN_TOKEN, refused=[400, 409])


def test_a_ten_thousand_key_list_is_read_a_page_at_a_time(browser):
    seeded = ConsoleService(seed_keys=10_000).start()
    page = browser.new_page()
    try:
        started = time.monotonic()
        sign_in(page, seeded, ADMIN_TOKEN)
        rows = page.locator("table.keys tbody tr")
        rows.nth(24).wait_for()
        first_page = rows.all_inner_texts()
        assert len(first_page) == 25
        assert time.monotonic() - started < 5
        page.get_by_role("button", name="Next page").click()
        page.get_by_text("Page 2", exact=True).wait_for()
        rows.nth(24).wait_for()
        assert rows.all_inner_texts() != first_page and rows.count() == 25
        listings = [parse_qs(urlparse(r.url).query) for r in page.requested if urlparse(r.url).path == "/v1/keys"]
        assert len(listings) == 2
        assert all(listing["limit"] == ["25"] for listing in listings)
        assert "cursor" in listings[1]
        assert_clean(page, ADMIN_TOKEN)
    finally:
        page.context.close()
        seeded.stop()


def test_rotate_with_a_grace_then_delete_after_a_confirmation_naming_the_key(service, page):
    old = service.create_key(name="console rotated", scopes=["check_status"])
    sign_in(page, service, ADMIN_TOKEN)
    page.goto(service.console_url(f"/console/#/keys/{old['id']}"))
    page.get_by_label("Grace period").fill("120")
    page.get_by_role("button", name="Rotate").click()
    successor_secret = page.get_by_label("Secret", exact=True).input_value()
    assert successor_secret.startswith("pk_live_") and successor_secret != old["key"]
    kept = service.admin("GET", f"/v1/keys/{old['id']}").json()
    assert kept["active"] and kept["expires_at"] is not None, "the old key works for the grace"
    page.get_by_role("button", name="Done").click()
    page.get_by_role("link", name=old["id"]).wait_for()
    successor_id = page.url.rsplit("/", 1)[1]
    assert service.admin("GET", f"/v1/keys/{successor_id}").json()["rotated_from"] == old["id"]

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete key “console rotated”?")
    assert dialog.get_by_role("button", name="Cancel").evaluate("button => button === document.activeElement")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert service.admin("GET", f"/v1/keys/{successor_id}").status_code == 200
    page.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    page.get_by_role("heading", name="Key console rotated deleted").wait_for()
    assert service.admin("GET", f"/v1/keys/{successor_id}").status_code == 404
    assert_clean(page, successor_secret, old["key"], ADMIN_TOKEN)
