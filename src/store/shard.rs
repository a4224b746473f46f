//! One shard of the key store (layout 2): the keys whose digest starts with the shard's 16
//! bits, in one shared-data entry, so that a million keys are ~65,000 map entries instead of a
//! million and a lookup is one read plus a binary search.
//!
//! Layout (little-endian): `format u8` (2) · `generation u64` · `count u32` · `count` index
//! entries of `tag [16] + end u32` sorted by tag (`end`: where the key's record ends in the
//! record area) · the record area (`record.rs`).
//!
//! A key's tag is bytes 2..18 of its SHA-256 digest, the 128 bits after the 16 that chose the
//! shard: a lookup matches 144 bits of the digest. Finding a secret whose SHA-256 matches a
//! stored key's on those bits is a second preimage on 144 bits (2^144 work), and two of a
//! million keys sharing them has odds of about 2^-105, so the other 112 bits would buy nothing
//! but 16 MB per million keys, which is what the tag saves over the full digest.
//!
//! A shard is current only if its generation is the store's: shards a full load wrote for a
//! generation that never went live, or that has been replaced, read as empty, so nothing has to
//! be deleted (shared data cannot delete) for them to stop counting.

use crate::store::record;
use keygate_contract::key_hash::Digest;

pub const FORMAT: u8 = 2;
const HEADER_LEN: usize = 13;
const TAG_LEN: usize = 16;
const INDEX_ENTRY_LEN: usize = TAG_LEN + 4;
/// Digest bits that pick the shard.
pub const SHARD_BITS: u32 = 16;
pub const SHARD_COUNT: u32 = 1 << SHARD_BITS;

/// The shard a digest belongs to.
pub fn shard_of(digest: &Digest) -> u16 {
    u16::from_be_bytes([digest[0], digest[1]])
}

/// What a shard keeps of a key's digest (see the module comment).
pub type Tag = [u8; TAG_LEN];

pub fn tag_of(digest: &Digest) -> Tag {
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&digest[2..2 + TAG_LEN]);
    tag
}

/// The generation a shard was written for, if the bytes are a shard.
pub fn generation_of(bytes: &[u8]) -> Option<u64> {
    if *bytes.first()? != FORMAT {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?))
}

/// A shard's entries, checked once: every record range is inside the bytes.
pub struct Shard<'a> {
    index: &'a [u8],
    records: &'a [u8],
    count: usize,
}

impl<'a> Shard<'a> {
    /// The shard in `bytes` if it is well formed and of `generation`; `None` reads as empty.
    pub fn parse(bytes: &'a [u8], generation: u64) -> Option<Shard<'a>> {
        if generation_of(bytes)? != generation {
            return None;
        }
        let count = u32::from_le_bytes(bytes.get(9..13)?.try_into().ok()?) as usize;
        let index_end = count
            .checked_mul(INDEX_ENTRY_LEN)?
            .checked_add(HEADER_LEN)?;
        Some(Shard {
            index: bytes.get(HEADER_LEN..index_end)?,
            records: bytes.get(index_end..)?,
            count,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn tag_at(&self, i: usize) -> &'a [u8] {
        self.index
            .get(i * INDEX_ENTRY_LEN..i * INDEX_ENTRY_LEN + TAG_LEN)
            .unwrap_or_default()
    }

    fn end_at(&self, i: usize) -> usize {
        self.index
            .get(i * INDEX_ENTRY_LEN + TAG_LEN..(i + 1) * INDEX_ENTRY_LEN)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize)
    }

    /// The record of entry `i`; `None` if its range is damaged.
    fn record_at(&self, i: usize) -> Option<&'a [u8]> {
        let start = if i == 0 { 0 } else { self.end_at(i - 1) };
        self.records.get(start..self.end_at(i))
    }

    /// Where the record of `digest` sits in the shard's bytes, if the shard holds it.
    pub fn find(&self, digest: &Digest) -> Option<&'a [u8]> {
        let tag = tag_of(digest);
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            match self.tag_at(mid).cmp(tag.as_slice()) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return self.record_at(mid),
            }
        }
        None
    }

    /// Every (tag, record) pair, in tag order; damaged entries are skipped.
    pub fn entries(&self) -> impl Iterator<Item = (Tag, &'a [u8])> + '_ {
        (0..self.count).filter_map(|i| {
            let tag: Tag = self.tag_at(i).try_into().ok()?;
            Some((tag, self.record_at(i)?))
        })
    }
}

/// A shard's bytes built from entries sorted by tag, each once.
pub fn build(generation: u64, entries: &[(Tag, &[u8])]) -> Vec<u8> {
    let records: usize = entries.iter().map(|(_, r)| r.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * INDEX_ENTRY_LEN + records);
    out.push(FORMAT);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut end = 0u32;
    for (tag, record) in entries {
        end = end.saturating_add(record.len() as u32);
        out.extend_from_slice(tag);
        out.extend_from_slice(&end.to_le_bytes());
    }
    for (_, record) in entries {
        out.extend_from_slice(record);
    }
    out
}

/// How merging changed a shard: keys added (negative: removed) and limited keys added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub keys: i64,
    pub limited: i64,
}

impl std::ops::AddAssign for Change {
    fn add_assign(&mut self, other: Change) {
        self.keys += other.keys;
        self.limited += other.limited;
    }
}

/// One key written to or removed from a shard: the record, or `None` to remove it.
pub type Edit<'r> = (Digest, Option<&'r [u8]>);

/// The shard `current` (empty when `None`) with `edits` (sorted by digest, each digest once)
/// applied, stamped with `generation`, and how the counts changed.
pub fn merge(
    current: Option<&Shard<'_>>,
    generation: u64,
    edits: &[Edit<'_>],
) -> (Vec<u8>, Change) {
    let old: Vec<(Tag, &[u8])> = current.map(|s| s.entries().collect()).unwrap_or_default();
    let mut merged: Vec<(Tag, &[u8])> = Vec::with_capacity(old.len() + edits.len());
    let mut change = Change::default();
    let limited = |record: &[u8]| i64::from(record::is_limited(record));
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < edits.len() {
        let take_old = match (old.get(i), edits.get(j)) {
            (Some((a, _)), Some((b, _))) => *a < tag_of(b),
            (Some(_), None) => true,
            _ => false,
        };
        if take_old {
            merged.push(old[i]);
            i += 1;
            continue;
        }
        let (digest, edit) = edits[j];
        let tag = tag_of(&digest);
        j += 1;
        if let Some((_, previous)) = old.get(i).filter(|(a, _)| *a == tag) {
            change.keys -= 1;
            change.limited -= limited(previous);
            i += 1;
        }
        if let Some(record) = edit {
            change.keys += 1;
            change.limited += limited(record);
            merged.push((tag, record));
        }
    }
    (build(generation, &merged), change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_contract::key_hash::digest_key;

    fn digests(n: usize) -> Vec<Digest> {
        // All in shard 0, as a shard's keys are: only the tag orders them.
        let mut all: Vec<Digest> = (0..n)
            .map(|i| {
                let mut digest = digest_key(&format!("k{i}"));
                digest[..2].copy_from_slice(&[0, 0]);
                digest
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys = digests(50);
        let records: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i % 7]).collect();
        let entries: Vec<(Tag, &[u8])> = keys
            .iter()
            .zip(&records)
            .map(|(d, r)| (tag_of(d), r.as_slice()))
            .collect();
        let bytes = build(9, &entries);
        let shard = Shard::parse(&bytes, 9).unwrap();
        assert_eq!(shard.len(), 50);
        for (digest, record) in keys.iter().zip(&records) {
            assert_eq!(shard.find(digest), Some(record.as_slice()));
        }
        assert_eq!(shard.find(&digest_key("absent")), None);
        assert_eq!(shard.entries().collect::<Vec<_>>(), entries);
        // Another generation's shard reads as empty.
        assert!(Shard::parse(&bytes, 8).is_none());
    }

    #[test]
    fn merges_upserts_replacements_and_deletions_and_counts_them() {
        let keys = digests(4);
        let plain = record::encode(&crate::store::key::StoredKey {
            generation: 0,
            id: "a".into(),
            name: String::new(),
            team: String::new(),
            environment: "live".into(),
            prefix: String::new(),
            scopes: vec![],
            allowed_ips: vec![],
            expires_at: None,
            active: true,
            limits: Default::default(),
            quota_exceeded_until: None,
        });
        let limited = {
            let mut bytes = plain.clone();
            bytes[1] = 1;
            bytes.insert(2, 60);
            bytes
        };
        let (bytes, change) = merge(
            None,
            3,
            &[(keys[0], Some(&plain)), (keys[2], Some(&limited))],
        );
        assert_eq!(
            change,
            Change {
                keys: 2,
                limited: 1
            }
        );
        let shard = Shard::parse(&bytes, 3).unwrap();
        // Replace keys[2] with an unlimited record, delete keys[0], add keys[1] and keys[3],
        // delete a key that is not there.
        let (bytes, change) = merge(
            Some(&shard),
            3,
            &[
                (keys[0], None),
                (keys[1], Some(&plain)),
                (keys[2], Some(&plain)),
                (keys[3], Some(&limited)),
            ],
        );
        assert_eq!(
            change,
            Change {
                keys: 1,
                limited: 0
            }
        );
        let shard = Shard::parse(&bytes, 3).unwrap();
        assert_eq!(shard.find(&keys[0]), None);
        assert_eq!(shard.find(&keys[1]), Some(plain.as_slice()));
        assert_eq!(shard.find(&keys[2]), Some(plain.as_slice()));
        assert_eq!(shard.find(&keys[3]), Some(limited.as_slice()));
        assert_eq!(
            merge(Some(&shard), 3, &[(digest_key("x"), None)]).1,
            Change::default()
        );
    }

    #[test]
    fn damaged_shards_never_panic() {
        let keys = digests(3);
        let entries: Vec<(Tag, &[u8])> = keys.iter().map(|d| (tag_of(d), &b"rec"[..])).collect();
        let bytes = build(1, &entries);
        for end in 0..bytes.len() {
            if let Some(shard) = Shard::parse(&bytes[..end], 1) {
                for digest in &keys {
                    let _ = shard.find(digest);
                }
                let _ = shard.entries().count();
            }
        }
        let mut lying = bytes.clone();
        lying[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Shard::parse(&lying, 1).is_none());
        let mut bad_end = bytes.clone();
        bad_end[HEADER_LEN + TAG_LEN..HEADER_LEN + INDEX_ENTRY_LEN]
            .copy_from_slice(&999u32.to_le_bytes());
        let shard = Shard::parse(&bad_end, 1).unwrap();
        assert_eq!(shard.find(&keys[0]), None);
    }
}
