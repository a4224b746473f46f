"""A leaked key in the console, in a real browser (Debian's Chromium through Playwright) against
the real control service: the list and the key's page show a "leaked" badge, the page says
where and when it was found (a link only for an http(s) URL: a reported URL comes from outside)
and offers Rotate but no way to turn the key back on."""

import pytest

from keygate_testkit.console import ConsoleService, sign_in
from keygate_testkit.paths import ADMIN_TOKEN


@pytest.fixture(scope="module")
def service():
    control = ConsoleService().start()
    yield control
    control.stop()


def report(service, key, url):
    answer = service.admin("POST", "/v1/keys/leaked", json={"key": key["key"], "url": url, "source": "commit"})
    assert answer.status_code == 200, answer.text


def test_a_leaked_key_is_badged_explained_and_cannot_be_reactivated(service, page):
    leaked = service.create_key(name="pushed-by-mistake")
    hostile = service.create_key(name="odd-report")
    fine = service.create_key(name="still-fine")
    report(service, leaked, "https://github.com/octo/app/blob/abc123/.env")
    report(service, hostile, "javascript:alert(document.domain)")
    sign_in(page, service, ADMIN_TOKEN)
    page.get_by_role("link", name="Keys").first.click()
    row = page.get_by_role("row").filter(has_text="pushed-by-mistake")
    row.get_by_text("leaked", exact=True).wait_for()
    assert page.get_by_role("row").filter(has_text=fine["name"]).get_by_text("leaked", exact=True).count() == 0

    row.get_by_role("link", name="pushed-by-mistake").click()
    notice = page.get_by_role("alert").filter(has_text="reported leaked")
    notice.wait_for()
    assert "a report by hand (commit)" in notice.inner_text()
    link = notice.get_by_role("link", name="https://github.com/octo/app/blob/abc123/.env")
    assert link.get_attribute("href") == "https://github.com/octo/app/blob/abc123/.env"
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert page.get_by_role("button", name="Rotate").is_visible()
    assert page.get_by_role("button", name="Activate").count() == 0
    assert page.get_by_role("button", name="Deactivate").count() == 0

    page.goto(service.console_url(f"/console/#/keys/{hostile['id']}"))
    notice = page.get_by_role("alert").filter(has_text="reported leaked")
    notice.wait_for()
    assert notice.get_by_role("link").count() == 0, "a javascript: URL is never a link"
    assert "javascript:alert(document.domain)" in notice.inner_text()
