//! Request parameters (RFC 6749 §3.1, §3.2): `application/x-www-form-urlencoded`, each at most
//! once, and a parameter sent without a value is treated as omitted. Names and values must be
//! UTF-8 once decoded (RFC 6749 Appendix B) and hold no NUL: such a request is refused here,
//! with the endpoint's 400, instead of being read with replacement characters or reaching the
//! database (PostgreSQL text cannot hold a NUL).

use std::collections::BTreeMap;

/// Longest value accepted for any one parameter.
pub const MAX_VALUE_LEN: usize = 4096;
/// Most parameters accepted in one request.
pub const MAX_PARAMS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("parameter {0} is too long")]
    TooLong(String),
    #[error("too many parameters")]
    TooMany,
    #[error("parameter {0} is not UTF-8")]
    NotUtf8(String),
    #[error("parameter {0} holds a NUL character")]
    Nul(String),
}

/// One name or value decoded (`+` is a space, then percent-decoding), or why it cannot be.
enum Decoded {
    Text(String),
    NotUtf8,
    Nul,
}

fn decode(raw: &[u8]) -> Decoded {
    let plus: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
    match String::from_utf8(bytes) {
        Ok(s) if s.contains('\0') => Decoded::Nul,
        Ok(s) => Decoded::Text(s),
        Err(_) => Decoded::NotUtf8,
    }
}

impl Params {
    pub fn parse(encoded: &[u8]) -> Result<Self, ParamsError> {
        let mut map = BTreeMap::new();
        for pair in encoded.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let shown = || String::from_utf8_lossy(raw_name).into_owned();
            let k = match decode(raw_name) {
                Decoded::Text(k) => k,
                Decoded::NotUtf8 => return Err(ParamsError::NotUtf8(shown())),
                Decoded::Nul => return Err(ParamsError::Nul(shown())),
            };
            let v = match decode(raw_value) {
                Decoded::Text(v) => v,
                Decoded::NotUtf8 => return Err(ParamsError::NotUtf8(k)),
                Decoded::Nul => return Err(ParamsError::Nul(k)),
            };
            if v.len() > MAX_VALUE_LEN {
                return Err(ParamsError::TooLong(k));
            }
            if map.len() >= MAX_PARAMS {
                return Err(ParamsError::TooMany);
            }
            if map.contains_key(&k) {
                return Err(ParamsError::Repeated(k));
            }
            map.insert(k, v);
        }
        // A repeated name where one copy is empty still counts as repeated (checked above);
        // only now are empty values dropped.
        map.retain(|_, v| !v.is_empty());
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub fn insert(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    /// Re-encodes the parameters, e.g. to carry an authorization request through a form.
    pub fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.0.iter())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_even_when_one_is_empty() {
        assert_eq!(
            Params::parse(b"a=1&a=2"),
            Err(ParamsError::Repeated("a".into()))
        );
        assert_eq!(
            Params::parse(b"a=&a=2"),
            Err(ParamsError::Repeated("a".into()))
        );
    }

    #[test]
    fn empty_values_are_omitted_and_encoding_round_trips() {
        let p = Params::parse(b"state=&scope=openid+profile&x=%2F").unwrap();
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("scope"), Some("openid profile"));
        assert_eq!(Params::parse(p.encode().as_bytes()).unwrap(), p);
    }

    #[test]
    fn rfc6749_appendix_b_non_utf8_and_nul_are_refused_not_replaced() {
        assert_eq!(
            Params::parse(b"email=a%FFb%40example.com"),
            Err(ParamsError::NotUtf8("email".into()))
        );
        assert_eq!(
            Params::parse(b"client_id=a%00b"),
            Err(ParamsError::Nul("client_id".into()))
        );
        assert_eq!(
            Params::parse(b"a%00=1"),
            Err(ParamsError::Nul("a%00".into()))
        );
        assert!(matches!(
            Params::parse(b"%C3=1"),
            Err(ParamsError::NotUtf8(_))
        ));
        // A real U+FFFD, sent encoded, is just a character.
        let p = Params::parse(b"x=%EF%BF%BD&y=a+b%2Bc&z").unwrap();
        assert_eq!(
            (p.get("x"), p.get("y"), p.get("z")),
            (Some("\u{FFFD}"), Some("a b+c"), None)
        );
    }

    #[test]
    fn limits_hold() {
        let long = format!("a={}", "x".repeat(MAX_VALUE_LEN + 1));
        assert!(matches!(
            Params::parse(long.as_bytes()),
            Err(ParamsError::TooLong(_))
        ));
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=1&")).collect();
        assert_eq!(Params::parse(many.as_bytes()), Err(ParamsError::TooMany));
    }
}
