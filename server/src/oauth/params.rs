//! Request parameters (RFC 6749 §3.1, §3.2): `application/x-www-form-urlencoded`, each at most
//! once, and a parameter sent without a value is treated as omitted.

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
}

impl Params {
    pub fn parse(encoded: &[u8]) -> Result<Self, ParamsError> {
        let mut map = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(encoded) {
            if v.len() > MAX_VALUE_LEN {
                return Err(ParamsError::TooLong(k.into_owned()));
            }
            if map.len() >= MAX_PARAMS {
                return Err(ParamsError::TooMany);
            }
            if map.contains_key(k.as_ref()) {
                return Err(ParamsError::Repeated(k.into_owned()));
            }
            map.insert(k.into_owned(), v.into_owned());
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
