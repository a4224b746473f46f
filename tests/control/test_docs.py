"""docs/control-api.md and control/openapi.json describe the same endpoints, and the service
serves the same document."""

import json
import re

from keygate_testkit.paths import ROOT as REPO_ROOT

METHODS = ["get", "post", "put", "patch", "delete"]


def documented_operations():
    text = (REPO_ROOT / "docs" / "control-api.md").read_text()
    return {(method.lower(), path) for method, path in
            re.findall(r"^#{2,4} `?(GET|POST|PUT|PATCH|DELETE) (/[^\s`]*)`?\s*$", text, re.MULTILINE)}


def openapi_operations(document):
    return {(method, path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_docs_and_openapi_list_the_same_operations():
    document = json.loads((REPO_ROOT / "control" / "openapi.json").read_text())
    documented = documented_operations()
    assert len(documented) >= 9
    assert documented == openapi_operations(document)


def test_service_serves_the_repository_document(api):
    served = api.request("GET", "/openapi.json", token=None).json()
    assert served == json.loads((REPO_ROOT / "control" / "openapi.json").read_text())


def test_every_route_in_the_document_exists(api):
    document = json.loads((REPO_ROOT / "control" / "openapi.json").read_text())
    for method, path in openapi_operations(document):
        response = api.request(method.upper(), path.replace("{id}", "key_missing"), token=None)
        assert response.status_code != 405, (method, path)
        if response.status_code == 404:
            assert response.json()["error"]["message"] != "no such route", (method, path)
