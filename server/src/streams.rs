//! Stream destinations: what a stream is (label, platform, RTMP URL, stream key, enabled),
//! how a request body becomes one, and how its key is sealed at rest (AES-256-GCM under the
//! current key-encryption key, the stream id as associated data, the KEK id kept for
//! rotation).

use latchkey_jwks::{KekError, KekRing};
use serde_json::Value;
use url::Url;

pub const PLATFORMS: [&str; 4] = ["youtube", "twitch", "kick", "custom"];
const MAX_LABEL_CHARS: usize = 64;
const MAX_URL_BYTES: usize = 512;
const MAX_KEY_BYTES: usize = 256;
/// Shorter keys would be mostly shown by the last-four mask.
const MIN_KEY_BYTES: usize = 12;

/// A validated stream destination from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInput {
    pub label: String,
    pub platform: String,
    pub rtmp_url: String,
    /// None: keep the current key (an update that does not change it).
    pub stream_key: Option<String>,
    pub enabled: bool,
}

/// Reads a stream from a JSON object: `label` (1–64 characters), `platform` (youtube,
/// twitch, kick or custom), `rtmp_url` (rtmp:// or rtmps:// with a host, no credentials, no
/// fragment, at most 512 bytes), `stream_key` (12–256 printable characters, no spaces; required
/// when `key_required`), `enabled` (default true). Unknown fields are refused.
pub fn parse_input(body: &Value, key_required: bool) -> Result<StreamInput, String> {
    let fields = body.as_object().ok_or("the body must be a JSON object")?;
    const KNOWN: [&str; 5] = ["label", "platform", "rtmp_url", "stream_key", "enabled"];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("{unknown} is not a field of a stream"));
    }
    let text = |name: &str| -> Result<&str, String> {
        fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name} must be a string"))
    };
    let raw_label = text("label")?;
    let label =
        crate::input::clean_label(raw_label, MAX_LABEL_CHARS).ok_or("label must not be empty")?;
    if raw_label.trim().chars().count() > MAX_LABEL_CHARS {
        return Err("label must be at most 64 characters".into());
    }
    let platform = text("platform")?;
    if !PLATFORMS.contains(&platform) {
        return Err("platform must be youtube, twitch, kick or custom".into());
    }
    let rtmp_url = validate_rtmp_url(text("rtmp_url")?)?;
    let stream_key = match fields.get("stream_key") {
        None | Some(Value::Null) if !key_required => None,
        Some(Value::String(k)) => {
            if k.len() < MIN_KEY_BYTES
                || k.len() > MAX_KEY_BYTES
                || !k.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(
                    "stream_key must be 12 to 256 printable characters without spaces".into(),
                );
            }
            Some(k.clone())
        }
        _ => return Err("stream_key must be a string".into()),
    };
    let enabled = match fields.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("enabled must be true or false".into()),
    };
    Ok(StreamInput {
        label,
        platform: platform.to_owned(),
        rtmp_url,
        stream_key,
        enabled,
    })
}

fn validate_rtmp_url(raw: &str) -> Result<String, String> {
    let bad = || "rtmp_url must be an rtmp:// or rtmps:// URL with a host".to_owned();
    if raw.len() > MAX_URL_BYTES {
        return Err("rtmp_url must be at most 512 bytes".into());
    }
    let url = Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "rtmp" | "rtmps") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("rtmp_url must not carry credentials: put the key in stream_key".into());
    }
    if url.fragment().is_some() {
        return Err("rtmp_url must not have a fragment".into());
    }
    Ok(raw.to_owned())
}

fn aad(stream_id: &str) -> Vec<u8> {
    format!("stream:{stream_id}").into_bytes()
}

/// Seals a stream key for the stream `stream_id`: the KEK id and the box.
pub fn seal_key(keks: &KekRing, stream_id: &str, key: &str) -> Result<(String, Vec<u8>), KekError> {
    keks.seal(key.as_bytes(), &aad(stream_id))
}

/// Opens a stream's key.
pub fn open_key(
    keks: &KekRing,
    stream_id: &str,
    kek_id: &str,
    sealed: &[u8],
) -> Result<String, KekError> {
    let bytes = keks.open(kek_id, sealed, &aad(stream_id))?;
    String::from_utf8(bytes).map_err(|_| KekError::Open)
}

/// The key as listings show it: its last four characters.
pub fn last4(key: &str) -> String {
    let n = key.chars().count();
    key.chars().skip(n.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_jwks::Kek;
    use serde_json::json;

    #[test]
    fn bodies_are_validated_with_reasons() {
        let ok = json!({"label": "Main", "platform": "twitch",
            "rtmp_url": "rtmps://live.twitch.tv/app", "stream_key": "live_123_abcd"});
        let s = parse_input(&ok, true).unwrap();
        assert!(s.enabled);
        assert_eq!(s.stream_key.as_deref(), Some("live_123_abcd"));
        for (body, why) in [
            (
                json!({"label": "x", "platform": "myspace", "rtmp_url": "rtmp://a.b/x", "stream_key": "k"}),
                "platform",
            ),
            (
                json!({"label": "x", "platform": "custom", "rtmp_url": "https://a.b/x", "stream_key": "k"}),
                "rtmp_url",
            ),
            (
                json!({"label": "x", "platform": "custom", "rtmp_url": "rtmp://u:p@a.b/x", "stream_key": "k"}),
                "credentials",
            ),
            (
                json!({"label": "", "platform": "custom", "rtmp_url": "rtmp://a.b/x", "stream_key": "k"}),
                "label",
            ),
            (
                json!({"label": "x", "platform": "custom", "rtmp_url": "rtmp://a.b/x", "stream_key": "a b"}),
                "stream_key",
            ),
            (
                json!({"label": "x", "platform": "custom", "rtmp_url": "rtmp://a.b/x"}),
                "stream_key",
            ),
            (
                json!({"label": "x", "platform": "custom", "rtmp_url": "rtmp://a.b/x", "stream_key": "k", "owner": "me"}),
                "owner",
            ),
            (json!(["not", "an", "object"]), "object"),
        ] {
            let e = parse_input(&body, true).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        let short = json!({"label": "x", "platform": "kick", "rtmp_url": "rtmp://a.b/x", "stream_key": "abcdefgh"});
        assert!(
            parse_input(&short, true).unwrap_err().contains("12 to 256"),
            "a mask must not show most of it"
        );
        let no_key = json!({"label": "x", "platform": "kick", "rtmp_url": "rtmp://a.b/x"});
        assert_eq!(parse_input(&no_key, false).unwrap().stream_key, None);
    }

    #[test]
    fn keys_are_sealed_per_stream_and_masked() {
        let keks = KekRing::new(vec![Kek::new("k1", &[9; 32])]).unwrap();
        let (kek_id, sealed) = seal_key(&keks, "s1", "live_secret_9876").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"9876"));
        assert_eq!(
            open_key(&keks, "s1", &kek_id, &sealed).unwrap(),
            "live_secret_9876"
        );
        assert!(
            open_key(&keks, "s2", &kek_id, &sealed).is_err(),
            "bound to its stream"
        );
        assert_eq!(last4("live_secret_9876"), "9876");
        assert_eq!(last4("ab"), "ab");
    }
}
