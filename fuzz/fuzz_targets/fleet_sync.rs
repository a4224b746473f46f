//! The binary fleet sync decoder (`contract::fleet::binary`) on both sides of the call: the
//! control service's `decode_post` and the filter's `decode_reply`.
//!
//! Invariants: never panics on any bytes; the format has one spelling per message (canonical
//! varints, no spare bits, nothing after the end), so whatever decodes re-encodes to exactly
//! the bytes it came from; a decoded post can be validated without panicking, its tags are
//! `key_tag`s, and every key of a decoded reply passes `validate_counts` (the decoder already
//! bounds what that checks).
#![no_main]

use keygate_contract::fleet::binary::{self, KIND_POST, KIND_REPLY, MAGIC};
use keygate_contract::fleet::{is_key_tag, validate_counts, validate_post};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok(post) = binary::decode_post(data) {
        assert_eq!(binary::encode_post(&post).expect("a decoded post encodes"), data);
        let _ = validate_post(&post);
        assert!(post.keys.iter().all(|key| is_key_tag(&key.key)));
    }
    if let Ok(reply) = binary::decode_reply(data) {
        assert_eq!(binary::encode_reply(&reply).expect("a decoded reply encodes"), data);
        for key in &reply.keys {
            assert!(validate_counts("key", key).is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = binary::is_binary(data);
    check(data);
    // Most random inputs lack the magic: try each behind a post's and a reply's start too.
    for kind in [KIND_POST, KIND_REPLY] {
        let mut prefixed = MAGIC.to_vec();
        prefixed.push(kind);
        prefixed.extend_from_slice(data);
        check(&prefixed);
    }
});
