"""The fleet sync's compact binary encoding (application/vnd.keygate.fleet-sync+binary), written
from docs/rate-limits.md alone, so the tests check the service against the documented layout
rather than against the Rust codec; bench/fleet_sync.py builds its posts with the same pieces.

Messages are the JSON ones as Python values: a post is
`{"proxy_id", "bucket_ms": [3], "window_ms": [3], "keys": [...]}`, a key
`{"key": 32 hex digits, "limits": [3 x int or None], "counts": [3 x [[bucket, count], ...]]}`."""

MEDIA_TYPE = "application/vnd.keygate.fleet-sync+binary"
# What the filter sends in Accept (contract/src/fleet/binary.rs).
FILTER_ACCEPT = f"{MEDIA_TYPE}, application/json;q=0.5"
MAGIC = b"KGFS\x01"
POST = MAGIC + b"P"
REPLY = MAGIC + b"R"
WINDOWS = 3
MASK64 = (1 << 64) - 1


def varint(value):
    """Unsigned LEB128."""
    assert 0 <= value <= MASK64, value
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(delta):
    """A signed 64-bit difference as an unsigned value: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    delta = (delta + (1 << 63)) % (1 << 64) - (1 << 63)  # wrap into i64
    return ((delta << 1) ^ (delta >> 63)) & MASK64


def key_head(tag, limits):
    """A key's tag and limits: the part of it that does not change between syncs."""
    present = sum(1 << window for window, limit in enumerate(limits) if limit is not None)
    return bytes.fromhex(tag) + bytes([present]) + b"".join(
        varint(limit) for limit in limits if limit is not None)


def pairs(buckets, previous=0):
    """`(bucket, count)` pairs, each bucket as the difference from the one before (`previous`
    for the first: 0 at the start of a window)."""
    out = []
    for bucket, count in buckets:
        out.append(varint(zigzag(bucket - previous)))
        out.append(varint(count))
        previous = bucket
    return b"".join(out)


def window(buckets):
    """One window: its number of pairs, then the pairs."""
    return varint(len(buckets)) + pairs(buckets)


def key(entry):
    return key_head(entry["key"], entry.get("limits", [None] * WINDOWS)) + b"".join(
        window(pairs) for pairs in entry.get("counts", [[]] * WINDOWS))


def post_head(proxy_id, bucket_ms, window_ms, key_count):
    """Everything of a post before its keys."""
    proxy = proxy_id.encode()
    return (POST + varint(len(proxy)) + proxy + b"".join(varint(v) for v in bucket_ms)
            + b"".join(varint(v) for v in window_ms) + varint(key_count))


def encode_post(post):
    return post_head(post["proxy_id"], post["bucket_ms"], post["window_ms"],
                     len(post["keys"])) + b"".join(key(entry) for entry in post["keys"])


class _Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, count):
        chunk = self.data[self.at:self.at + count]
        if len(chunk) != count:
            raise ValueError(f"truncated at byte {self.at}")
        self.at += count
        return chunk

    def varint(self):
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint longer than 64 bits")


def _key(reader):
    tag = reader.take(16).hex()
    present = reader.take(1)[0]
    limits = [reader.varint() if present & (1 << w) else None for w in range(WINDOWS)]
    counts = []
    for _ in range(WINDOWS):
        pairs, previous = [], 0
        for _ in range(reader.varint()):
            delta = reader.varint()
            signed = (delta >> 1) ^ -(delta & 1)
            previous = (previous + signed) & MASK64
            pairs.append([previous, reader.varint()])
        counts.append(pairs)
    return {"key": tag, "limits": limits, "counts": counts}


def decode_reply(data):
    """A reply as the JSON one reads: `{"keys": [...]}`."""
    if not data.startswith(REPLY):
        raise ValueError(f"not a binary fleet sync reply: {data[:8]!r}")
    reader = _Reader(data)
    reader.take(len(REPLY))
    keys = [_key(reader) for _ in range(reader.varint())]
    if reader.at != len(data):
        raise ValueError("bytes after the last key")
    return {"keys": keys}


def count_reply_keys(data):
    """The number of keys in a binary reply, read off its head alone."""
    if not data.startswith(REPLY):
        raise ValueError(f"not a binary fleet sync reply: {data[:8]!r}")
    reader = _Reader(data)
    reader.take(len(REPLY))
    return reader.varint()
