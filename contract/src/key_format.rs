//! The shape of a Keygate API key, defined once for the service that issues keys, the filter
//! that refuses a mistyped one before any lookup and the CLI that checks one offline
//! (docs/security.md, "Key format").
//!
//! `pk_live_` or `pk_test_`, then 40 random base62 characters, then (keys issued from 0.3 on)
//! a 6-character base62 CRC-32 of everything before it, prefix included: a key pasted under the
//! wrong environment fails its checksum too. Keys issued before have no checksum and are 40
//! characters after the prefix; checksummed keys are 46, so the length alone tells the two
//! apart and an old key is never refused for a checksum it never had.

/// The alphabet of the random part and the checksum.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const LIVE_PREFIX: &str = "pk_live_";
pub const TEST_PREFIX: &str = "pk_test_";
/// Random characters after the prefix: 40 base62 characters are about 238 bits.
pub const RANDOM_LEN: usize = 40;
/// 62^6 > 2^32, so six base62 digits hold any CRC-32.
pub const CHECKSUM_LEN: usize = 6;
const PREFIX_LEN: usize = 8;
/// Length of a checksummed key, prefix included.
pub const CHECKSUMMED_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;
/// Length of a key issued before checksums, prefix included.
pub const LEGACY_LEN: usize = PREFIX_LEN + RANDOM_LEN;
/// What a scanner matches; a match is a Keygate key when its checksum holds as well.
pub const SCAN_REGEX: &str = r"\bpk_(?:live|test)_[0-9A-Za-z]{46}\b";

/// The environment a key's prefix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnvironment {
    Live,
    Test,
}

impl KeyEnvironment {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyEnvironment::Live => LIVE_PREFIX,
            KeyEnvironment::Test => TEST_PREFIX,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnvironment::Live => "live",
            KeyEnvironment::Test => "test",
        }
    }

    /// The environment named `name` (`live`, `test`) as records carry it.
    pub fn parse(name: &str) -> Option<KeyEnvironment> {
        match name {
            "live" => Some(KeyEnvironment::Live),
            "test" => Some(KeyEnvironment::Test),
            _ => None,
        }
    }
}

/// What a presented string is, as far as its shape tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyShape {
    /// Prefix, 40 random characters and a checksum, which holds or not.
    Checksummed {
        environment: KeyEnvironment,
        checksum_ok: bool,
    },
    /// Prefix and 40 random characters: issued before checksums, nothing to verify offline.
    Legacy { environment: KeyEnvironment },
    /// No key Keygate issued in any format (wrong prefix, length or alphabet).
    Unknown,
}

fn environment_of(key: &[u8]) -> Option<KeyEnvironment> {
    match key.get(..PREFIX_LEN)? {
        b"pk_live_" => Some(KeyEnvironment::Live),
        b"pk_test_" => Some(KeyEnvironment::Test),
        _ => None,
    }
}

fn is_base62(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// The 6 base62 digits of the CRC-32 (IEEE) of `text`, most significant first.
pub fn checksum(text: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32fast::hash(text);
    let mut digits = [BASE62[0]; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits
}

/// `body` (prefix and random part) with its checksum appended.
pub fn with_checksum(body: &str) -> String {
    let mut key = String::with_capacity(body.len() + CHECKSUM_LEN);
    key.push_str(body);
    key.extend(
        checksum(body.as_bytes())
            .iter()
            .map(|&digit| char::from(digit)),
    );
    key
}

/// Classifies `key` by its shape and, for a checksummed key, its checksum.
pub fn classify(key: &str) -> KeyShape {
    let bytes = key.as_bytes();
    let Some(environment) = environment_of(bytes) else {
        return KeyShape::Unknown;
    };
    if !is_base62(&bytes[PREFIX_LEN..]) {
        return KeyShape::Unknown;
    }
    match bytes.len() {
        LEGACY_LEN => KeyShape::Legacy { environment },
        CHECKSUMMED_LEN => {
            let (body, sum) = bytes.split_at(LEGACY_LEN);
            KeyShape::Checksummed {
                environment,
                checksum_ok: checksum(body) == sum,
            }
        }
        _ => KeyShape::Unknown,
    }
}

/// Whether `key` has the checksummed shape and a checksum that does not hold: a typo, a
/// truncated paste or a forgery the request path refuses before hashing. Any other length
/// costs one comparison.
pub fn fails_checksum(key: &str) -> bool {
    key.len() == CHECKSUMMED_LEN
        && matches!(
            classify(key),
            KeyShape::Checksummed {
                checksum_ok: false,
                ..
            }
        )
}

#[cfg(test)]
mod tests;
