//! `WWW-Authenticate` challenges (RFC 7235): which scheme a registry wants, and for Bearer
//! where to get a token (`realm`, `service`, `scope`).

use std::collections::BTreeMap;

/// Longest challenge header parsed: real ones are a few hundred bytes; the registry (or
/// anything pretending to be one) controls it.
pub const MAX_CHALLENGE_BYTES: usize = 8 << 10;
/// Most parameters kept from one challenge.
const MAX_PARAMS: usize = 32;

/// What a registry asked for in a 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Fetch a token from `realm`, for `service` and `scope`.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
        /// The access the registry says the request needs.
        scope: Option<String>,
    },
    /// Send a username and password.
    Basic,
}

/// Parses a `WWW-Authenticate` value; `None` if it asks for neither Bearer nor Basic or is
/// malformed or too long.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    if header.len() > MAX_CHALLENGE_BYTES {
        return None;
    }
    let header = header.trim_start();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = parse_params(rest)?;
    let realm = params.remove("realm").filter(|r| !r.is_empty())?;
    Some(Challenge::Bearer {
        realm,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// `key=value, key="quoted \" value"`; keys lowercased.
fn parse_params(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        if key.is_empty() || key.contains([' ', '"', ',']) {
            return None;
        }
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            s = &quoted[end?..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        if out.len() >= MAX_PARAMS {
            return None;
        }
        out.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            }
        );
    }

    #[test]
    fn odd_but_valid_and_invalid() {
        assert_eq!(
            parse_challenge(r#"basic realm="x""#),
            Some(Challenge::Basic)
        );
        let c = parse_challenge(r#"BEARER Realm=http://t/token , service="a\"b""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://t/token".into(),
                service: Some("a\"b".into()),
                scope: None
            }
        );
        for bad in [
            "Digest realm=x",
            "Bearer",
            "Bearer service=x",
            r#"Bearer realm="unterminated"#,
            "Bearer realm",
            &format!("Bearer realm=\"{}\"", "a".repeat(MAX_CHALLENGE_BYTES)),
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad}");
        }
    }
}
