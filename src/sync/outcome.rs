//! What became of an allowed request, read in Envoy's log phase: the upstream's status class
//! (`contract::usage::UPSTREAM_CLASSES`), or `none` when the stream ended without a complete
//! answer. Envoy exposes the status as the `response.code` property and what went wrong as the
//! `response.flags` bit set (its legacy core flags, stable across releases: `StreamInfo`'s
//! `CoreResponseFlag` order); both are 8-byte little-endian integers.

use keygate_contract::usage::{upstream_class, UPSTREAM_CLASSES};

/// `response.flags` bits that mean the request got no complete answer from the upstream: no
/// healthy upstream (UH), upstream timeout (UT), local reset (LR), upstream reset (UR),
/// connection failure (UF) or termination (UC), overflow (UO), downstream connection
/// termination (DC: the client hung up), retry limit (URX), stream idle timeout (SI), max
/// stream duration (UMSDR), duration timeout (DT), upstream protocol error (UPE), no cluster
/// (NC), overload (OM), DNS failure (DF), drop overload (DO), downstream remote reset (DR).
pub const NO_ANSWER_FLAGS: u64 = 0x2 // UH
    | 0x4 // UT
    | 0x8 // LR
    | 0x10 // UR
    | 0x20 // UF
    | 0x40 // UC
    | 0x80 // UO
    | 0x4000 // DC
    | 0x8000 // URX
    | 0x1_0000 // SI
    | 0x8_0000 // UMSDR
    | 0x40_0000 // DT
    | 0x80_0000 // UPE
    | 0x100_0000 // NC
    | 0x200_0000 // OM
    | 0x400_0000 // DF
    | 0x800_0000 // DO
    | 0x1000_0000; // DR

/// An Envoy integer property's value.
pub fn property_int(raw: Option<&[u8]>) -> Option<u64> {
    let bytes: [u8; 8] = raw?.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The `UPSTREAM_CLASSES` index of a request that got `status` (0 or absent: none) with
/// `flags`.
pub fn class_index(status: Option<u64>, flags: u64) -> usize {
    let status = status.filter(|status| *status > 0 && flags & NO_ANSWER_FLAGS == 0);
    let class = upstream_class(status.and_then(|status| u32::try_from(status).ok()));
    UPSTREAM_CLASSES
        .iter()
        .position(|known| *known == class)
        .unwrap_or(UPSTREAM_CLASSES.len() - 1)
}

/// Whether a request of class `index` is worth an event (`5xx` or `none`).
pub fn is_failure(index: usize) -> bool {
    index >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_status_and_flags() {
        let class = |status, flags| UPSTREAM_CLASSES[class_index(status, flags)];
        assert_eq!(class(Some(200), 0), "2xx");
        assert_eq!(class(Some(404), 0), "4xx");
        assert_eq!(class(Some(503), 0), "5xx");
        assert_eq!(
            class(Some(503), 0x20),
            "none",
            "connection failure: Envoy's own 503"
        );
        assert_eq!(class(Some(504), 0x4), "none", "upstream timeout");
        assert_eq!(
            class(Some(200), 0x4000),
            "none",
            "client hung up mid-response"
        );
        assert_eq!(
            class(Some(200), 0x200),
            "2xx",
            "delay injected is not a failure"
        );
        assert_eq!(class(None, 0), "none");
        assert_eq!(class(Some(0), 0), "none");
        assert!(is_failure(class_index(Some(500), 0)) && is_failure(class_index(None, 0)));
        assert!(!is_failure(class_index(Some(499), 0)));
    }

    #[test]
    fn integer_properties() {
        assert_eq!(property_int(Some(&503u64.to_le_bytes())), Some(503));
        assert_eq!(property_int(Some(b"503")), None);
        assert_eq!(property_int(None), None);
    }
}
