"""GitHub's side of secret scanning, as the tests play it: an ECDSA P-256 key pair made with the
`cryptography` package, the public keys document in GitHub's shape, and reports signed over
their raw body as GitHub signs them (base64 of the DER signature)."""

import base64
import hashlib
import json

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PATH = "/v1/secret-scanning/github"
TOKEN_TYPE = "keygate_api_key"


class GitHubSigner:
    def __init__(self, identifier=None):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        pem = self.public_pem()
        self.identifier = identifier or hashlib.sha256(pem.encode()).hexdigest()

    def public_pem(self):
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def entry(self, is_current=True):
        return {"key_identifier": self.identifier, "key": self.public_pem(), "is_current": is_current}

    def sign(self, body: bytes) -> str:
        signature = self.private_key.sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def headers(self, body: bytes):
        return {"Content-Type": "application/json", "Github-Public-Key-Identifier": self.identifier,
                "Github-Public-Key-Signature": self.sign(body)}


def write_keys(path, *signers):
    """The public keys document, as GitHub serves it, listing `signers`."""
    path.write_text(json.dumps({"public_keys": [signer.entry() for signer in signers]}))
    return path


def report_body(*tokens, url="https://github.com/octo/repo/blob/abc/.env", source="content"):
    return json.dumps([{"token": token, "type": TOKEN_TYPE, "url": url, "source": source}
                       for token in tokens]).encode()


def post_report(base_url, signer, body, headers=None, timeout=30):
    """POSTs `body` as GitHub would (signed by `signer`, or with `headers` as given)."""
    return requests.post(base_url + PATH, data=body, timeout=timeout,
                         headers=signer.headers(body) if headers is None else headers)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
