"""The service serves control/openapi.json, the repository's document, and has a route for every
operation in it. That the document and docs/control-api.md agree is
tests/repo/test_control_api_doc.py."""

import json

from keygate_testkit.paths import ROOT
from keygate_testkit.shipped import openapi_operations


def test_service_serves_the_repository_document(api):
    served = api.request("GET", "/openapi.json", token=None).json()
    assert served == json.loads((ROOT / "control" / "openapi.json").read_text())


def test_every_route_in_the_document_exists(api):
    document = json.loads((ROOT / "control" / "openapi.json").read_text())
    for method, path in openapi_operations(document):
        response = api.request(method.upper(), path.replace("{id}", "key_missing"), token=None)
        assert response.status_code != 405, (method, path)
        if response.status_code == 404:
            assert response.json()["error"]["message"] != "no such route", (method, path)
