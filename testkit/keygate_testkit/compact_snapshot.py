"""A reader of the compact snapshot encoding written from docs/snapshot.md alone, so the tests
check the service against the documented layout rather than against the Rust decoder."""

import struct
from datetime import datetime

MEDIA_TYPE = "application/vnd.keygate.snapshot+binary"
# What the filter sends (src/sync/refresh.rs).
FILTER_ACCEPT = f"{MEDIA_TYPE}, application/json;q=0.5"
MAGIC = b"KGSNAP\x00\x01"
LIMIT_NAMES = ["per_minute", "per_hour", "per_day", "concurrent"]


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, count):
        chunk = self.data[self.at:self.at + count]
        assert len(chunk) == count, f"truncated at byte {self.at}"
        self.at += count
        return chunk

    def unpack(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def text(self):
        return self.take(self.unpack("H")).decode()

    def rest(self):
        return self.data[self.at:]


def unix_seconds(text):
    """An RFC 3339 instant of a JSON record in Unix seconds, as the compact encoding carries it
    (a fraction of a second is dropped, as the filter drops it)."""
    if text is None:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() // 1)


def as_compact(record):
    """A JSON record with its instants in Unix seconds, to compare with a compact one."""
    return dict(record, expires_at=unix_seconds(record["expires_at"]),
                quota_exceeded_until=unix_seconds(record["quota_exceeded_until"]))


def decode_record(body):
    """A record shaped like a JSON one, instants in Unix seconds."""
    reader = Reader(body)
    record = {"hash": reader.take(32).hex()}
    for field in ["id", "prefix", "last4", "name", "team", "environment", "plan"]:
        record[field] = reader.text()
    for field in ["scopes", "allowed_ips"]:
        record[field] = [reader.text() for _ in range(reader.unpack("H"))]
    flags = reader.unpack("B")
    record["active"] = bool(flags & 1)
    record["expires_at"] = reader.unpack("q") if flags & 2 else None
    record["quota_exceeded_until"] = reader.unpack("q") if flags & 4 else None
    present = reader.unpack("B")
    record["limits"] = {name: reader.unpack("Q") if present & (1 << bit) else None
                        for bit, name in enumerate(LIMIT_NAMES)}
    return record


def decode_page(data):
    """A compact page as a dict shaped like the JSON page, plus `total_keys`."""
    reader = Reader(data)
    assert reader.take(8) == MAGIC
    header = Reader(reader.take(reader.unpack("I")))
    page = {"version": header.unpack("Q"), "since": header.unpack("Q")}
    flags = header.unpack("B")
    page["full"] = bool(flags & 1)
    page["epoch"] = header.text()
    if flags & 2:
        page["next_cursor"] = header.text()
    page["total_keys"] = header.unpack("Q")
    record_count, deleted_count = header.unpack("I"), header.unpack("I")
    page["keys"] = [decode_record(reader.take(reader.unpack("I"))) for _ in range(record_count)]
    page["deleted"] = [reader.take(32).hex() for _ in range(deleted_count)]
    assert reader.rest() == b"", "bytes after the deletions"
    return page


def compact_snapshot(api, **params):
    """GET /v1/snapshot asking for the compact encoding; returns (response, decoded page)."""
    response = api.request("GET", "/v1/snapshot", token="sync", params=params,
                           headers={"Accept": FILTER_ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    return response, decode_page(response.content)
