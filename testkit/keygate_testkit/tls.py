"""Certificates for TLS tests, made at test time: a private CA and server certificates it
signs, with the subject alternative names a test asks for (Python `cryptography`)."""
import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What the control service's test certificates name: the loopback address the kit connects
# to, `localhost`, and the name Envoy's SAN check expects (envoy_yaml's control TLS).
CONTROL_SANS = ("127.0.0.1", "localhost", "control.keygate.test")
DAY = datetime.timedelta(days=1)


@dataclass
class IssuedCertificate:
    cert: Path
    key: Path
    serial: int


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


class TestCA:
    """A CA of its own in `directory` (`ca.pem`), issuing server certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory, name="Keygate test CA"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = self.directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, sans=CONTROL_SANS):
        """A server certificate for `sans` (DNS names or IP addresses) and its key, written to
        `<stem>.pem` and `<stem>.key` in the CA's directory."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(_name(sans[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - DAY).not_valid_after(now + 7 * DAY)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        issued = IssuedCertificate(self.directory / f"{stem}.pem", self.directory / f"{stem}.key", serial)
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


def served_serial(host, port, ca_path, server_name=None, timeout=5):
    """The serial number of the certificate `host:port` serves, verified against the CA at
    `ca_path` for `server_name` (default: `host`)."""
    context = ssl.create_default_context(cafile=str(ca_path))
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name or host) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number
