//! `extract::extract` and `strip_query_param` over arbitrary header lists.
//!
//! Input: the first byte selects the configured sources (bit 0: `x-api-key` header, bit 1:
//! `api_key` query parameter); after the first `\n`, one header per line as `name: value`
//! (the value is arbitrary bytes). Names come from the input, so the fuzzer mixes the ones that
//! matter (`authorization`, `x-api-key`, `:path`) with others.
#![no_main]

use keygate::policy::extract::{
    extract, strip_query_param, Credential, Source, Sources, MAX_KEY_LEN,
};
use libfuzzer_sys::fuzz_target;

const HEADER: &str = "x-api-key";
const PARAM: &str = "api_key";

fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().take_while(|b| is_ows(b)).count();
    let rest = &value[start..];
    let end = rest.len() - rest.iter().rev().take_while(|b| is_ows(b)).count();
    &rest[..end]
}

/// The key an `Authorization` value carries, by RFC 6750 read independently: `None` when the
/// value is empty (absent), `Some(Err)` when it is not `Bearer <token>`.
fn bearer(value: &[u8]) -> Option<Result<&[u8], ()>> {
    let value = trim(value);
    if value.is_empty() {
        return None;
    }
    let split = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return Some(Err(()));
    }
    Some(Ok(trim(rest)))
}

/// The value of the first `api_key` pair in the query of `path` (before any fragment).
fn query_value(path: &[u8]) -> Option<&[u8]> {
    let question = path.iter().position(|&b| b == b'?')?;
    let hash = path.iter().position(|&b| b == b'#').unwrap_or(path.len());
    if hash < question {
        return None;
    }
    path[question + 1..hash]
        .split(|&b| b == b'&')
        .find_map(|pair| {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let name = parts.next().unwrap_or_default();
            (name == PARAM.as_bytes()).then(|| parts.next().unwrap_or_default())
        })
}

/// RFC 6750 b64token, 1..=256 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    let body = key.len() - key.iter().rev().take_while(|&&b| b == b'=').count();
    (1..=MAX_KEY_LEN).contains(&key.len())
        && body > 0
        && key[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn query_pair_names(path: &str) -> Vec<&str> {
    // A `?` inside the fragment does not start a query.
    let before_fragment = path.split('#').next().unwrap_or_default();
    let Some((_, query)) = before_fragment.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or_default())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sources = Sources {
        header: (mode & 1 != 0).then_some(HEADER),
        query_param: (mode & 2 != 0).then_some(PARAM),
    };
    let rest = rest.splitn(2, |&b| b == b'\n').nth(1).unwrap_or_default();
    let headers: Vec<(String, Vec<u8>)> = rest
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.windows(2).position(|w| w == b": ")?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name.to_string(), line[colon + 2..].to_vec()))
        })
        .collect();

    // Every credential the request carries, read independently of `extract`.
    let mut presented: Vec<Result<&[u8], ()>> = Vec::new();
    for (name, value) in &headers {
        if name == "authorization" {
            presented.extend(bearer(value));
        } else if sources.header == Some(name.as_str()) {
            let value = trim(value);
            if !value.is_empty() {
                presented.push(Ok(value));
            }
        } else if name == ":path" && sources.query_param.is_some() {
            presented.extend(query_value(value).map(Ok));
        }
    }

    match extract(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        sources,
    ) {
        Credential::Present { key, source } => {
            let key = key.as_bytes();
            assert!(is_valid_key(key), "accepted an invalid key {key:?}");
            // Every credential in the request is this same key: a second, different one (or a
            // wrong scheme) must have made the request malformed.
            assert!(!presented.is_empty());
            for candidate in &presented {
                assert_eq!(
                    candidate.as_ref().ok(),
                    Some(&key),
                    "conflicting credential let through"
                );
            }
            let from_source = headers.iter().any(|(name, value)| match source {
                Source::Authorization => name == "authorization" && bearer(value) == Some(Ok(key)),
                Source::Header => sources.header == Some(name.as_str()) && trim(value) == key,
                Source::Query => name == ":path" && query_value(value) == Some(key),
            });
            assert!(
                from_source,
                "key not found in its reported source {source:?}"
            );
        }
        Credential::Token(_) | Credential::UnusableToken => {
            panic!("a token from headers: only the glue reads verified tokens, from metadata")
        }
        Credential::Missing => {
            assert!(presented.is_empty(), "missed a credential: {presented:?}");
        }
        Credential::Malformed(_) => {
            let all_same_and_valid = presented
                .iter()
                .all(|c| matches!(c, Ok(k) if is_valid_key(k) && Ok(*k) == presented[0]));
            assert!(
                presented.is_empty() || !all_same_and_valid,
                "refused a well-formed request: {presented:?}"
            );
            assert!(!presented.is_empty(), "malformed without any credential");
        }
    }

    for (name, value) in &headers {
        if name != ":path" {
            continue;
        }
        let Ok(path) = std::str::from_utf8(value) else {
            continue;
        };
        let stripped = strip_query_param(path, PARAM);
        assert!(
            !query_pair_names(&stripped).contains(&PARAM),
            "{path:?} -> {stripped:?} still carries {PARAM}"
        );
        if !path.contains('#') {
            // (With a fragment, a `?` inside it can become the first one once the query is gone.)
            assert_eq!(
                strip_query_param(&stripped, PARAM),
                stripped,
                "not idempotent"
            );
        }
        if !path.contains('?') {
            assert_eq!(stripped, path);
        }
    }
});
