//! The bytes of one counter slot in shared data.
//!
//! Most slots hold a key that sent a handful of requests, so only what is there is written:
//! the format byte, the key's tag (owner and seed, 16 bytes), its three window limits as
//! varints, a byte saying which rings have counts (in-flight, three local, three remote), and
//! for each of those its newest bucket (varint), a bitmap of its non-zero positions and their
//! counts (varints). A key's first request on the free plan is 40 bytes, where a fixed layout
//! of every ring took 824; remote rings cost nothing until the fleet sync writes some.
//!
//! Two one-byte values are not keys: `BLANK`, what the table is created with (a slot never
//! used: a key's probe sequence can stop there, see `counters.rs`), and `FREED`, a slot a key
//! left when the table grew (free to take, but not blank: keys placed before it was used may
//! live further along its probe sequences).
//!
//! Decoding is strict and canonical (`decode(encode(s)) == s` and `encode(decode(b)) == b`),
//! so garbage or a slot of an older layout is never mistaken for counts; it reads as free.
//! Encoding writes into a fixed buffer: no heap on the request path.

use crate::limits::window::{Ring, SlotState, IN_FLIGHT_BUCKETS, MAX_RING, RING_LENS};
use keygate_contract::reader::Reader;

/// A slot never used since the table was created.
pub const BLANK: &[u8] = &[0];
/// A slot given up by a key that moved when the table grew.
pub const FREED: &[u8] = &[1];
const FORMAT: u8 = 2;
/// Varint of a u64 at most.
const MAX_VARINT: usize = 10;
/// Format, tag, limits, presence byte, then seven rings of newest + bitmap + counts.
pub const MAX_LEN: usize =
    1 + 16 + 3 * MAX_VARINT + 1 + 7 * (MAX_VARINT + 4 + MAX_RING * (MAX_VARINT / 2));

/// What a slot holds.
// Large by design: boxing the state would put every slot read of the request path on the heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Never used: no key's probe sequence goes past it.
    Blank,
    /// Free to take: freed by a key that moved, or bytes that are not a slot of this layout.
    Free,
    Held(SlotState),
}

/// Classifies a slot's bytes (`None`: an empty value).
pub fn classify(bytes: Option<&[u8]>) -> Slot {
    match bytes {
        Some(BLANK) => Slot::Blank,
        Some(bytes) => decode(bytes).map_or(Slot::Free, Slot::Held),
        None => Slot::Free,
    }
}

/// An encoded slot, in a fixed buffer.
pub struct Encoded {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl Encoded {
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

struct Writer<'a> {
    out: &'a mut Encoded,
}

impl Writer<'_> {
    fn byte(&mut self, byte: u8) {
        if let Some(at) = self.out.bytes.get_mut(self.out.len) {
            *at = byte;
            self.out.len += 1;
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.byte(byte);
        }
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte((value as u8) | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    fn ring(&mut self, ring: &Ring) {
        self.varint(ring.newest);
        let mut bitmap = 0u32;
        for (index, &count) in ring.counts().iter().enumerate() {
            bitmap |= u32::from(count > 0) << index;
        }
        self.bytes(&bitmap.to_le_bytes());
        let mut rest = bitmap;
        while rest != 0 {
            let index = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            self.varint(u64::from(ring.counts().get(index).copied().unwrap_or(0)));
        }
    }
}

/// The rings of a slot in their stored order, with their lengths.
fn rings(state: &SlotState) -> [&Ring; 7] {
    [
        &state.in_flight,
        &state.rings[0],
        &state.rings[1],
        &state.rings[2],
        &state.remote[0],
        &state.remote[1],
        &state.remote[2],
    ]
}

const RING_LEN_BY_POSITION: [usize; 7] = [
    IN_FLIGHT_BUCKETS,
    RING_LENS[0],
    RING_LENS[1],
    RING_LENS[2],
    RING_LENS[0],
    RING_LENS[1],
    RING_LENS[2],
];

pub fn encode(state: &SlotState) -> Encoded {
    let mut out = Encoded {
        bytes: [0; MAX_LEN],
        len: 0,
    };
    let mut writer = Writer { out: &mut out };
    writer.byte(FORMAT);
    writer.bytes(&state.owner.to_le_bytes());
    writer.bytes(&state.seed.to_le_bytes());
    for &limit in &state.limits {
        writer.varint(limit);
    }
    let rings = rings(state);
    let mut present = 0u8;
    for (position, ring) in rings.iter().enumerate() {
        if !ring.is_empty() {
            present |= 1 << position;
        }
    }
    writer.byte(present);
    for (position, ring) in rings.iter().enumerate() {
        if present & (1 << position) != 0 {
            writer.ring(ring);
        }
    }
    out
}

fn ring(reader: &mut Reader<'_>, len: usize) -> Option<Ring> {
    let mut ring = Ring::with_len(len);
    ring.newest = reader.varint()?;
    let bitmap = reader.u32()?;
    if bitmap == 0 || bitmap >> len != 0 {
        return None;
    }
    let mut rest = bitmap;
    while rest != 0 {
        let index = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let count = u32::try_from(reader.varint()?).ok().filter(|&c| c > 0)?;
        ring.set_count(index, count);
    }
    Some(ring)
}

/// Decodes a key's slot; `None` for anything else (blank, freed, garbage, another layout).
pub fn decode(bytes: &[u8]) -> Option<SlotState> {
    let mut reader = Reader::new(bytes);
    if reader.u8()? != FORMAT {
        return None;
    }
    let owner = reader.u64()?;
    let mut state = SlotState::for_key(owner, reader.u64()?);
    for limit in &mut state.limits {
        *limit = reader.varint()?;
    }
    let present = reader.u8()?;
    if present >> 7 != 0 {
        return None;
    }
    for (position, len) in RING_LEN_BY_POSITION.iter().enumerate() {
        if present & (1 << position) == 0 {
            continue;
        }
        let counts = ring(&mut reader, *len)?;
        match position {
            0 => state.in_flight = counts,
            1..=3 => state.rings[position - 1] = counts,
            _ => state.remote[position - 4] = counts,
        }
    }
    (reader.bytes.is_empty() && owner != 0).then_some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::window::{admit, Windows};
    use keygate_contract::snapshot::Limits;

    fn free_plan() -> Limits {
        Limits {
            per_minute: Some(60),
            per_hour: None,
            per_day: Some(1_000),
            concurrent: None,
        }
    }

    #[test]
    fn a_first_request_is_small_and_round_trips() {
        let windows = Windows::default();
        let mut state = SlotState::for_key(0x0123_4567_89AB_CDEF, 42);
        let now = 1_764_000_000_000;
        assert!(admit(&mut state, &free_plan(), &windows, now, 1).0.is_ok());
        let encoded = encode(&state);
        assert_eq!(encoded.as_bytes().len(), 40);
        assert_eq!(decode(encoded.as_bytes()), Some(state));
        assert_eq!(classify(Some(encoded.as_bytes())), Slot::Held(state));
    }

    #[test]
    fn every_ring_full_fits_the_buffer_and_round_trips() {
        let mut state = SlotState::for_key(u64::MAX, u64::MAX);
        state.limits = [u64::MAX; 3];
        let mut rings = [
            state.in_flight,
            state.rings[0],
            state.rings[1],
            state.rings[2],
        ];
        for ring in &mut rings {
            ring.newest = u64::MAX;
            for index in 0..MAX_RING {
                ring.set_count(index, u32::MAX);
            }
        }
        state.in_flight = rings[0];
        state.rings = [rings[1], rings[2], rings[3]];
        state.remote = state.rings;
        let encoded = encode(&state);
        assert!(encoded.as_bytes().len() <= MAX_LEN);
        assert_eq!(decode(encoded.as_bytes()), Some(state));
    }

    #[test]
    fn blank_freed_garbage_and_other_layouts_are_not_keys() {
        assert_eq!(classify(Some(BLANK)), Slot::Blank);
        assert_eq!(classify(Some(FREED)), Slot::Free);
        assert_eq!(classify(None), Slot::Free);
        // The fixed 824-byte layout of earlier filters starts with the owner: not this format.
        assert_eq!(classify(Some(&[7; 824])), Slot::Free);
        let windows = Windows::default();
        let mut state = SlotState::for_key(9, 9);
        assert!(admit(&mut state, &free_plan(), &windows, 5_000, 1)
            .0
            .is_ok());
        let good = encode(&state).as_bytes().to_vec();
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        let mut owner_zero = good.clone();
        owner_zero[1..9].fill(0);
        assert_eq!(decode(&owner_zero), None);
        let mut padded_limit = good[..17].to_vec();
        padded_limit.extend_from_slice(&[0xBC, 0x00]);
        padded_limit.extend_from_slice(&good[18..]);
        assert_eq!(decode(&padded_limit), None, "non-canonical varint");
    }

    #[test]
    fn decoding_then_encoding_gives_the_same_bytes() {
        let windows = Windows::default();
        let mut state = SlotState::for_key(3, 4);
        let limits = Limits {
            concurrent: Some(2),
            ..free_plan()
        };
        for t in [1_000, 1_500, 9_000, 130_000] {
            let _ = admit(&mut state, &limits, &windows, t, 1);
        }
        state.set_remote(0, &[(65, 12)], &windows, 130_000);
        let bytes = encode(&state).as_bytes().to_vec();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(encode(&decoded).as_bytes(), bytes.as_slice());
    }
}
