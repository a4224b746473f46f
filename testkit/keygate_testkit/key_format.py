"""Keygate's key format, written again from docs/security.md with Python's own CRC-32, so the
tests check the service's keys against the documentation rather than against its own code."""

import re
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The regex docs/security.md gives scanners.
SCAN_REGEX = re.compile(r"\bpk_(?:live|test)_[0-9A-Za-z]{46}\b")


def checksum(body: str) -> str:
    """Six base62 digits of the CRC-32 of `body` (prefix and random part), most significant first."""
    value = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        digits = BASE62[value % 62] + digits
        value //= 62
    return digits


def is_checksummed_key(text: str) -> bool:
    """Whether `text` is a whole checksummed key whose checksum holds."""
    return bool(SCAN_REGEX.fullmatch(text)) and checksum(text[:-6]) == text[-6:]


def find_keys(text: str) -> list[str]:
    """Every checksummed Keygate key in `text`, as a scanner following the docs finds them."""
    return [match for match in SCAN_REGEX.findall(text) if is_checksummed_key(match)]


def with_wrong_checksum(key: str) -> str:
    """`key` with one checksum character changed (so the checksum no longer holds)."""
    last = "A" if key[-1] != "A" else "B"
    return key[:-1] + last
