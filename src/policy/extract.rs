//! Reading the API key from the request: `Authorization: Bearer …`, an optional named header
//! and an optional query parameter.

/// Longest key accepted; anything longer is malformed before we hash it.
pub const MAX_KEY_LEN: usize = 256;
/// Longest bearer value read at all: an OAuth access token (a few hundred bytes) fits.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a presented credential was refused before lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// `Authorization` with a scheme other than Bearer.
    WrongScheme,
    /// `Bearer` with nothing after it, or an empty key header.
    Empty,
    TooLong,
    /// Bytes outside the RFC 6750 b64token alphabet (spaces, controls, non-ASCII, …).
    BadCharacters,
    /// More than one distinct key in the request.
    Conflicting,
}

/// Result of looking for a key in a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No key in any configured source.
    Missing,
    Present {
        key: &'a str,
        source: Source,
    },
    Malformed(Malformed),
    /// An OAuth access token Envoy's `jwt_authn` verified (not read from headers: the glue
    /// reads it from the request's metadata when no key is present).
    Token(&'a AccessToken),
    /// A verified token payload without Keygate's claims.
    UnusableToken,
}

/// Where the key was found. (The glue strips every configured source a request carries, the
/// query parameter before the decision, so it no longer reads this.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Authorization,
    Header,
    Query,
}

use crate::policy::token::{looks_like_jwt, AccessToken};

/// The configured places to look.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'c> {
    pub header: Option<&'c str>,
    pub query_param: Option<&'c str>,
}

/// RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" followed by "="s.
fn is_b64token(token: &[u8]) -> bool {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    body_end > 0
        && token[..body_end].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &value[start..end]
}

fn validate_key(key: &[u8]) -> Result<&str, Malformed> {
    if key.is_empty() {
        return Err(Malformed::Empty);
    }
    if key.len() > MAX_TOKEN_LEN {
        return Err(Malformed::TooLong);
    }
    if !is_b64token(key) {
        return Err(Malformed::BadCharacters);
    }
    let key = std::str::from_utf8(key).map_err(|_| Malformed::BadCharacters)?;
    // An access token `jwt_authn` refused is longer than any key; it is answered as a token.
    if key.len() > MAX_KEY_LEN && !looks_like_jwt(key) {
        return Err(Malformed::TooLong);
    }
    Ok(key)
}

/// Parses one `Authorization` value. `Ok(None)` for an empty header (treated as absent).
fn parse_authorization(value: &[u8]) -> Result<Option<&str>, Malformed> {
    let value = trim_ows(value);
    if value.is_empty() {
        return Ok(None);
    }
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Err(Malformed::WrongScheme);
    }
    validate_key(trim_ows(&value[scheme_end..])).map(Some)
}

fn query_value<'a>(path: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let query_start = path.iter().position(|&b| b == b'?')? + 1;
    let query_end = path.iter().position(|&b| b == b'#').unwrap_or(path.len());
    if query_start > query_end {
        return None;
    }
    path[query_start..query_end]
        .split(|&b| b == b'&')
        .find_map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (key == name.as_bytes()).then_some(value)
        })
}

/// Finds the key among the request headers (`(lower-case name, raw value)` pairs, pseudo
/// headers included). Several sources carrying the same key are fine; different keys are not.
pub fn extract<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    sources: Sources<'_>,
) -> Credential<'a> {
    let mut found: Option<(&'a str, Source)> = None;
    let mut consider =
        |candidate: Result<Option<&'a str>, Malformed>, source: Source| -> Result<(), Malformed> {
            if let Some(key) = candidate? {
                match found {
                    Some((seen, _)) if seen != key => return Err(Malformed::Conflicting),
                    Some(_) => {}
                    None => found = Some((key, source)),
                }
            }
            Ok(())
        };
    for (name, value) in headers {
        let outcome = if name == "authorization" {
            consider(parse_authorization(value), Source::Authorization)
        } else if sources.header == Some(name) {
            let value = trim_ows(value);
            let candidate = if value.is_empty() {
                Ok(None)
            } else {
                validate_key(value).map(Some)
            };
            consider(candidate, Source::Header)
        } else if name == ":path" {
            match sources
                .query_param
                .and_then(|param| query_value(value, param))
            {
                Some(raw) => consider(validate_key(raw).map(Some), Source::Query),
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        if let Err(malformed) = outcome {
            return Credential::Malformed(malformed);
        }
    }
    match found {
        Some((key, source)) => Credential::Present { key, source },
        None => Credential::Missing,
    }
}

/// `:path` with the query parameter `name` removed, so a key sent in the URL is not forwarded.
pub fn strip_query_param(path: &str, name: &str) -> String {
    let Some(query_start) = path.find('?') else {
        return path.to_string();
    };
    let (base, query) = path.split_at(query_start);
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    let kept: Vec<&str> = query[1..]
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect();
    if kept.is_empty() {
        format!("{base}{fragment}")
    } else {
        format!("{base}?{}{fragment}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "pk_live_AbCdEf0123456789AbCdEf0123456789abcd";

    fn run(
        headers: &[(&str, &[u8])],
        header: Option<&str>,
        query: Option<&str>,
    ) -> Credential<'static> {
        let owned: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let leaked: &'static [(String, Vec<u8>)] = Box::leak(owned.into_boxed_slice());
        extract(
            leaked.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            Sources {
                header,
                query_param: query,
            },
        )
    }

    fn bearer(value: &str) -> Vec<u8> {
        format!("Bearer {value}").into_bytes()
    }

    #[test]
    fn bearer_key_is_exactly_the_bytes_after_the_scheme() {
        for auth in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER   {KEY}  "),
            format!("Bearer\t{KEY}"),
        ] {
            assert_eq!(
                run(&[("authorization", auth.as_bytes())], None, None),
                Credential::Present {
                    key: KEY,
                    source: Source::Authorization
                },
                "{auth}"
            );
        }
    }

    #[test]
    fn malformed_values_are_named() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        let cases: Vec<(Vec<u8>, Malformed)> = vec![
            (format!("Basic {KEY}").into_bytes(), Malformed::WrongScheme),
            (KEY.as_bytes().to_vec(), Malformed::WrongScheme),
            (b"Bearer".to_vec(), Malformed::Empty),
            (b"Bearer    ".to_vec(), Malformed::Empty),
            (bearer(&long), Malformed::TooLong),
            (bearer("a b"), Malformed::BadCharacters),
            (bearer("key\0x"), Malformed::BadCharacters),
            (bearer("kéy"), Malformed::BadCharacters),
            (bearer("==="), Malformed::BadCharacters),
            (bearer("a=b"), Malformed::BadCharacters),
            (bearer("a\r\nx-injected: 1"), Malformed::BadCharacters),
            (b"Bearer \xff\xfe".to_vec(), Malformed::BadCharacters),
        ];
        for (value, expected) in cases {
            assert_eq!(
                run(&[("authorization", &value)], None, None),
                Credential::Malformed(expected),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }

    #[test]
    fn exactly_max_len_is_accepted_and_padding_allowed() {
        let max = "a".repeat(MAX_KEY_LEN);
        assert!(matches!(
            run(&[("authorization", &bearer(&max))], None, None),
            Credential::Present { .. }
        ));
        assert!(matches!(
            run(&[("authorization", &bearer("abc=="))], None, None),
            Credential::Present { .. }
        ));
    }

    #[test]
    fn an_access_token_may_be_longer_than_a_key_but_not_unbounded() {
        let token = format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", "e".repeat(600));
        assert!(matches!(
            run(&[("authorization", &bearer(&token))], None, None),
            Credential::Present { .. }
        ));
        let too_long = format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", "e".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            run(&[("authorization", &bearer(&too_long))], None, None),
            Credential::Malformed(Malformed::TooLong)
        );
        let dotted_key = format!("{}.x", "a".repeat(MAX_KEY_LEN));
        assert_eq!(
            run(&[("authorization", &bearer(&dotted_key))], None, None),
            Credential::Malformed(Malformed::TooLong)
        );
    }

    #[test]
    fn missing_and_empty_mean_no_key() {
        assert_eq!(
            run(&[(":path", b"/v1/jobs")], None, None),
            Credential::Missing
        );
        assert_eq!(
            run(&[("authorization", b"")], None, None),
            Credential::Missing
        );
        assert_eq!(
            run(&[("authorization", b"   ")], None, None),
            Credential::Missing
        );
        assert_eq!(
            run(&[("x-api-key", b"")], Some("x-api-key"), None),
            Credential::Missing
        );
    }

    #[test]
    fn header_and_query_sources_only_when_configured() {
        let headers: &[(&str, &[u8])] = &[("x-api-key", KEY.as_bytes())];
        assert_eq!(run(headers, None, None), Credential::Missing);
        assert_eq!(
            run(headers, Some("x-api-key"), None),
            Credential::Present {
                key: KEY,
                source: Source::Header
            }
        );
        let path = format!("/v1/models?a=1&api_key={KEY}&b=2");
        let headers: &[(&str, &[u8])] = &[(":path", path.as_bytes())];
        assert_eq!(run(headers, None, None), Credential::Missing);
        assert_eq!(
            run(headers, None, Some("api_key")),
            Credential::Present {
                key: KEY,
                source: Source::Query
            }
        );
        let encoded: &[(&str, &[u8])] = &[(":path", b"/x?api_key=a%20b")];
        assert_eq!(
            run(encoded, None, Some("api_key")),
            Credential::Malformed(Malformed::BadCharacters)
        );
        let empty: &[(&str, &[u8])] = &[(":path", b"/x?api_key=")];
        assert_eq!(
            run(empty, None, Some("api_key")),
            Credential::Malformed(Malformed::Empty)
        );
    }

    #[test]
    fn several_keys_must_agree() {
        let same = bearer(KEY);
        assert!(matches!(
            run(
                &[("authorization", &same), ("authorization", &same)],
                None,
                None
            ),
            Credential::Present { .. }
        ));
        assert!(matches!(
            run(
                &[("authorization", &same), ("x-api-key", KEY.as_bytes())],
                Some("x-api-key"),
                None
            ),
            Credential::Present { .. }
        ));
        let other = bearer("pk_live_other");
        assert_eq!(
            run(
                &[("authorization", &same), ("authorization", &other)],
                None,
                None
            ),
            Credential::Malformed(Malformed::Conflicting)
        );
        assert_eq!(
            run(
                &[("authorization", &same), ("x-api-key", b"pk_live_other")],
                Some("x-api-key"),
                None
            ),
            Credential::Malformed(Malformed::Conflicting)
        );
    }

    #[test]
    fn query_param_is_stripped_from_the_path() {
        assert_eq!(
            strip_query_param("/v1/models?api_key=k", "api_key"),
            "/v1/models"
        );
        assert_eq!(
            strip_query_param("/v1/models?a=1&api_key=k&b=2", "api_key"),
            "/v1/models?a=1&b=2"
        );
        assert_eq!(
            strip_query_param("/v1/models?a=1#frag", "api_key"),
            "/v1/models?a=1#frag"
        );
        assert_eq!(strip_query_param("/v1/models", "api_key"), "/v1/models");
        assert_eq!(
            strip_query_param("/v1/models?api_keyx=1", "api_key"),
            "/v1/models?api_keyx=1"
        );
    }
}
