"""contract/src/ip_sketch.rs's register of an IPv4 address, as the filter computes it: for tests
and benchmarks that post usage reports with address sketches."""

MASK = (1 << 64) - 1


def ip_register(n):
    """The (register, value) IPv4 address `n` (an integer) sets: FNV-1a over its 4 bytes, then
    MurmurHash3's 64-bit finalizer; the register is the top byte, the value 1 + the leading
    zeros of the other 56 bits."""
    state = 0xcbf29ce484222325
    for byte in n.to_bytes(4, "big"):
        state = ((state ^ byte) * 0x100000001b3) & MASK
    state ^= state >> 33
    state = (state * 0xff51afd7ed558ccd) & MASK
    state ^= state >> 33
    state = (state * 0xc4ceb9fe1a85ec53) & MASK
    state ^= state >> 33
    rest = ((state << 8) & MASK) | 0x80
    return state >> 56, 64 - rest.bit_length() + 1
