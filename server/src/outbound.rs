//! Every request Latchkey makes to a URL someone else chose: fetching a client's or trusted
//! issuer's JWKS (`jwks_uri`, cached), client ID metadata documents and resource servers'
//! RFC 9728 metadata, and posting back-channel logout tokens. Such a request is
//! a server-side request forgery risk, so ([`Guard`]): https only, no redirects, every resolved
//! address must be public (no loopback, private, link-local, ...) and the connection is pinned
//! to the address checked, bounded size and time. A `danger_` option may allow http and
//! private addresses for closed test setups. TLS is always verified, against the system's
//! trust anchors and `outbound.extra_ca_file`'s; no option turns it off.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use latchkey_jwks::{PublicKeySet, VerifyError};
use tokio::sync::Mutex;

const MAX_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched JWKS is used.
const CACHE_TTL: i64 = 300;
/// A forced refetch (unknown `kid`) happens at most this often per URI.
const MIN_REFETCH: i64 = 60;

struct Cached {
    keys: Arc<PublicKeySet>,
    fetched_at: i64,
}

/// The rules of one kind of outbound request.
#[derive(Clone)]
pub struct Guard {
    allow_private: bool,
    allow_loopback: bool,
    allow_http: bool,
    /// Trust anchors beside the system's (`outbound.extra_ca_file`).
    roots: Vec<reqwest::Certificate>,
    timeout: Duration,
}

/// An answer to a GET: its status, its body (read up to the limit) and its `Cache-Control`.
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

/// Why a GET brought nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The URL breaks the rules (scheme, address) and was not fetched.
    Refused(String),
    /// The answer was larger than the limit.
    TooLarge,
    /// No complete answer within the time allowed.
    TimedOut,
    /// Anything else: resolution, connection, TLS.
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Refused(why) | FetchError::Failed(why) => f.write_str(why),
            FetchError::TooLarge => f.write_str("the answer is larger than allowed"),
            FetchError::TimedOut => f.write_str("no answer in time"),
        }
    }
}

impl Guard {
    /// https only; private addresses only with `allow_private`.
    pub fn new(allow_private: bool, roots: Vec<reqwest::Certificate>) -> Self {
        Self {
            allow_private,
            allow_loopback: allow_private,
            allow_http: false,
            roots,
            timeout: TIMEOUT,
        }
    }

    /// Also http:// and private addresses: only for closed test setups (a `danger_` option).
    /// An https URI is still verified.
    pub fn insecure(roots: Vec<reqwest::Certificate>) -> Self {
        Self {
            allow_private: true,
            allow_loopback: true,
            allow_http: true,
            roots,
            timeout: TIMEOUT,
        }
    }

    /// Also http:// and loopback addresses, but no other private one: for a lab where the
    /// other party runs on this machine (a `danger_` option).
    pub fn loopback(roots: Vec<reqwest::Certificate>) -> Self {
        Self {
            allow_private: false,
            allow_loopback: true,
            allow_http: true,
            roots,
            timeout: TIMEOUT,
        }
    }

    /// The same rules with another time limit for the whole request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || (self.allow_loopback && ip.is_loopback())
    }

    /// GETs `uri` with `accept`, reading at most `max_bytes` of the body; redirects are not
    /// followed (a 3xx is answered as it is).
    pub async fn get(
        &self,
        uri: &str,
        what: &str,
        accept: &str,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        // One deadline for all of it: resolving, connecting, the answer.
        tokio::time::timeout(self.timeout, self.get_within(uri, what, accept, max_bytes))
            .await
            .map_err(|_| FetchError::TimedOut)?
    }

    async fn get_within(
        &self,
        uri: &str,
        what: &str,
        accept: &str,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let (client, url) = self.pinned(uri, what).await.map_err(FetchError::Refused)?;
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::TimedOut
            } else {
                FetchError::Failed(format!("fetching {what}: {e}"))
            }
        };
        let mut resp = client
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(failed)?;
        let status = resp.status().as_u16();
        let cache_control = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            body,
            cache_control,
        })
    }

    /// A client for `uri` that connects only to the address checked here, and the URL.
    async fn pinned(&self, uri: &str, what: &str) -> Result<(reqwest::Client, url::Url), String> {
        let url = url::Url::parse(uri).map_err(|_| format!("{what} is not a URL"))?;
        if url.scheme() != "https" && !(self.allow_http && url.scheme() == "http") {
            return Err(format!("{what} must be https"));
        }
        let host = url
            .host_str()
            .ok_or(format!("{what} has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| format!("resolving the {what} host timed out"))?
                .map_err(|e| format!("cannot resolve the {what} host: {e}"))?
                .collect();
        let addr = *addrs
            .first()
            .ok_or(format!("the {what} host has no address"))?;
        if addrs.iter().any(|a| !self.address_allowed(a.ip())) {
            return Err(format!("{what} resolves to a non-public address"));
        }
        // No proxy: a proxy would resolve the host itself, past the address check.
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .resolve(&host, addr);
        for root in &self.roots {
            client = client.add_root_certificate(root.clone());
        }
        Ok((client.build().map_err(|e| e.to_string())?, url))
    }

    /// POSTs `form` to `uri` (a back-channel logout); the status answered.
    pub async fn post_form(
        &self,
        uri: &str,
        what: &str,
        form: &[(&str, &str)],
    ) -> Result<u16, String> {
        let (client, url) = self.pinned(uri, what).await?;
        let resp = client
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| format!("posting to {what}: {e}"))?;
        Ok(resp.status().as_u16())
    }
}

pub struct JwksFetcher {
    guard: Guard,
    cache: Mutex<HashMap<String, Cached>>,
}

/// The certificates of `outbound.extra_ca_file` (checked by the configuration already).
pub fn extra_roots(pems: &[String]) -> Vec<reqwest::Certificate> {
    pems.iter()
        .filter_map(|p| reqwest::Certificate::from_pem(p.as_bytes()).ok())
        .collect()
}

impl JwksFetcher {
    pub fn new(allow_private: bool, roots: Vec<reqwest::Certificate>) -> Self {
        Self {
            guard: Guard::new(allow_private, roots),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A fetcher that also takes http:// and private addresses: only for closed test setups
    /// (`danger_allow_insecure_jwks_uri`). An https URI is still verified.
    pub fn insecure(roots: Vec<reqwest::Certificate>) -> Self {
        Self {
            guard: Guard::insecure(roots),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The keys at `uri`, from the cache when fresh; `refresh` asks for a refetch (rate-limited).
    pub async fn keys(
        &self,
        uri: &str,
        now: i64,
        refresh: bool,
    ) -> Result<Arc<PublicKeySet>, String> {
        {
            let cache = self.cache.lock().await;
            if let Some(c) = cache.get(uri) {
                let age = now - c.fetched_at;
                if age < CACHE_TTL && (!refresh || age < MIN_REFETCH) {
                    return Ok(c.keys.clone());
                }
            }
        }
        let keys = Arc::new(self.fetch(uri).await?);
        let mut cache = self.cache.lock().await;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            uri.to_owned(),
            Cached {
                keys: keys.clone(),
                fetched_at: now,
            },
        );
        Ok(keys)
    }

    /// Runs `check` (a verification) with the keys at `uri`. When they hold no key of the
    /// token's `kid`, the owner may have rotated: the keys are fetched once more (at most once
    /// a minute per URI) and `check` runs again. Err: the keys could not be fetched; Ok: what
    /// the verification came to.
    pub async fn check<T>(
        &self,
        uri: &str,
        now: i64,
        check: impl Fn(&PublicKeySet) -> Result<T, VerifyError>,
    ) -> Result<Result<T, VerifyError>, String> {
        match check(&*self.keys(uri, now, false).await?) {
            Err(VerifyError::UnknownKid) => Ok(check(&*self.keys(uri, now, true).await?)),
            other => Ok(other),
        }
    }

    async fn fetch(&self, uri: &str) -> Result<PublicKeySet, String> {
        let fetched = self
            .guard
            .get(uri, "jwks_uri", "application/json", MAX_BYTES)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge => "the JWKS at jwks_uri is too large".to_owned(),
                FetchError::TimedOut => "fetching jwks_uri timed out".to_owned(),
                other => other.to_string(),
            })?;
        if fetched.status != 200 {
            return Err(format!("jwks_uri answered {}", fetched.status));
        }
        let text =
            String::from_utf8(fetched.body).map_err(|_| "the JWKS is not UTF-8".to_owned())?;
        PublicKeySet::from_jwks_json(&text)
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (CGNAT), unspecified, multicast, broadcast or documentation, in IPv4 or IPv6 (including
/// IPv4-mapped IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let o = v6.octets();
            let v4_at =
                |i: usize| IpAddr::V4(std::net::Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]));
            // Addresses that carry an IPv4 address reach it: judge that one. IPv4-compatible
            // (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16).
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(v4_at(12));
            }
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(v4_at(12));
            }
            if seg[0] == 0x2002 {
                return is_public(v4_at(2));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                // site-local (deprecated), local-use NAT64 (RFC 8215), Teredo, documentation
                || (seg[0] & 0xffc0) == 0xfec0
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
                || (seg[0] == 0x2001 && seg[1] == 0)
                || seg[0] == 0x2001 && seg[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378::1",
            "fec0::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn fetching_refuses_http_and_loopback() {
        let f = JwksFetcher::new(false, Vec::new());
        assert!(
            f.keys("http://example.com/jwks", 0, false)
                .await
                .unwrap_err()
                .contains("https")
        );
        let e = f
            .keys("https://127.0.0.1/jwks", 0, false)
            .await
            .unwrap_err();
        assert!(e.contains("non-public"), "{e}");
        let e = f
            .keys("https://localhost:1/jwks", 0, false)
            .await
            .unwrap_err();
        assert!(e.contains("non-public"), "{e}");
    }
}
