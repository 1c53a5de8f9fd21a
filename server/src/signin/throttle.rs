//! Sign-in throttling: failures are counted per client address and per account name, in the
//! database so that every instance sees them. After a few failures each further one doubles
//! the wait, up to a cap; a success clears the account's count. The account wait is capped
//! lower than the address wait: a stranger can slow an account down for minutes, never lock it
//! out. Counters are kept under pepper digests of their names.

use crate::secrets::{Pepper, Purpose};
use crate::store::{Store, StoreError};

/// Failures allowed before waits begin.
pub const FREE_FAILURES: i64 = 5;
/// A failure older than this starts the count afresh.
pub const WINDOW: i64 = 15 * 60;
/// Longest wait for one client address.
pub const MAX_ADDRESS_WAIT: i64 = 15 * 60;
/// Longest wait for one account, whoever is failing at it.
pub const MAX_ACCOUNT_WAIT: i64 = 5 * 60;

/// The wait after the `failures`-th failure: none up to [`FREE_FAILURES`], then 2, 4, 8... s.
pub fn wait_after(failures: i64, cap: i64) -> i64 {
    if failures <= FREE_FAILURES {
        return 0;
    }
    let exp = u32::try_from((failures - FREE_FAILURES).min(20)).unwrap_or(20);
    2i64.saturating_pow(exp).min(cap)
}

/// How failures against one account are counted.
#[derive(Clone, Copy, Debug)]
struct AccountPolicy {
    /// A failure older than this starts the count afresh.
    window: i64,
    /// The longest wait.
    cap: i64,
}

/// Password sign-in: anyone can fail at any account, so waits stay short.
const SIGNIN: AccountPolicy = AccountPolicy {
    window: WINDOW,
    cap: MAX_ACCOUNT_WAIT,
};

/// The second factor: only someone who passed the first factor fails here, so no stranger can
/// cause these waits, and they grow long: counted over a day, up to six hours, so that
/// guessing a 6-digit code stays hopeless (RFC 6238 §5.2; NIST SP 800-63B §5.2.2).
const SECOND_FACTOR: AccountPolicy = AccountPolicy {
    window: 24 * 60 * 60,
    cap: 6 * 60 * 60,
};

pub struct Keys {
    address: String,
    account: Option<(String, AccountPolicy)>,
}

impl Keys {
    /// Password sign-in: per address and per account name as typed.
    pub fn new(pepper: &Pepper, ip: Option<&str>, account: &str) -> Self {
        Self::for_account(pepper, ip, "signin-account", account, SIGNIN)
    }

    /// The second factor after a password or a mailed link (TOTP and recovery codes share one
    /// count): per address and per user.
    pub fn second_factor(pepper: &Pepper, ip: Option<&str>, user_id: &str) -> Self {
        Self::for_account(pepper, ip, "second-factor", user_id, SECOND_FACTOR)
    }

    /// User codes typed at `/device`: per address and per signed-in user, like sign-in
    /// failures, so the 20^8 codes cannot be walked.
    pub fn device_code(pepper: &Pepper, ip: Option<&str>, user_id: &str) -> Self {
        Self::for_account(pepper, ip, "device-code", user_id, SIGNIN)
    }

    /// Requests that may send mail (password reset, sign-in link, sign-up link, address
    /// change): every request counts, per client address only, apart from sign-in failures.
    /// Per mail address there is no visible limit (a stranger could otherwise keep someone's
    /// mail blocked); [`mail_allowed`] quietly spaces the messages instead.
    pub fn mail_request(pepper: &Pepper, ip: Option<&str>) -> Self {
        Self::address(pepper, "mail-ip", ip)
    }

    /// Failures of one `kind` against one account, and of every sign-in kind from one address.
    fn for_account(
        pepper: &Pepper,
        ip: Option<&str>,
        kind: &str,
        account: &str,
        policy: AccountPolicy,
    ) -> Self {
        let account = format!("{kind}:{}", account.trim().to_lowercase());
        Self {
            account: Some((pepper.digest(Purpose::Throttle, account.as_bytes()), policy)),
            ..Self::address_only(pepper, ip)
        }
    }

    /// Counting per address only: for attempts that name no account (a passkey sign-in).
    pub fn address_only(pepper: &Pepper, ip: Option<&str>) -> Self {
        Self::address(pepper, "signin-ip", ip)
    }

    fn address(pepper: &Pepper, kind: &str, ip: Option<&str>) -> Self {
        let address = format!("{kind}:{}", network(ip));
        Self {
            address: pepper.digest(Purpose::Throttle, address.as_bytes()),
            account: None,
        }
    }

    fn keys(&self) -> Vec<String> {
        std::iter::once(self.address.clone())
            .chain(self.account.as_ref().map(|(k, _)| k.clone()))
            .collect()
    }

    /// Seconds to wait before another attempt is looked at (0: go ahead).
    pub async fn wait(&self, store: &Store, now: i64) -> Result<i64, StoreError> {
        let until = store.blocked_until(&self.keys()).await?;
        Ok((until - now).max(0))
    }

    /// Counts a failure for the address and (when there is one) the account; returns the
    /// account's count within its window.
    pub async fn failed(&self, store: &Store, now: i64) -> Result<Option<i64>, StoreError> {
        let address = AccountPolicy {
            window: WINDOW,
            cap: MAX_ADDRESS_WAIT,
        };
        count(store, &self.address, address, now).await?;
        match &self.account {
            Some((key, policy)) => Ok(Some(count(store, key, *policy, now).await?)),
            None => Ok(None),
        }
    }

    pub async fn succeeded(&self, store: &Store) -> Result<(), StoreError> {
        match &self.account {
            Some((account, _)) => store.clear_throttle(account).await,
            None => Ok(()),
        }
    }
}

/// Counts one failure for `key` and starts the wait its count calls for; returns the count.
async fn count(
    store: &Store,
    key: &str,
    policy: AccountPolicy,
    now: i64,
) -> Result<i64, StoreError> {
    let n = store.record_failure(key, now, policy.window).await?;
    let wait = wait_after(n, policy.cap);
    if wait > 0 {
        store.block_until(key, now + wait).await?;
    }
    Ok(n)
}

/// What a client address is counted as: an IPv4 address, or the /64 an IPv6 address is in
/// (one subscriber usually holds a whole /64, and could otherwise count as 2^64 addresses).
pub fn network(ip: Option<&str>) -> String {
    use std::net::{IpAddr, Ipv6Addr};
    match ip
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .map(|a| a.to_canonical())
    {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4.to_string(),
        None => ip.unwrap_or("unknown").to_owned(),
    }
}

/// Clients one address may register by open dynamic registration (`registration.policy =
/// "open"`) in each [`OPEN_REGISTRATION_WINDOW`] (clock hours).
pub const OPEN_REGISTRATIONS: i64 = 20;
pub const OPEN_REGISTRATION_WINDOW: i64 = 60 * 60;

/// A quota per client address for requests that create something: up to `allowed` in each
/// fixed `window` (aligned on multiples of `window` seconds), then a wait until the next one.
/// The count is one atomic upsert, so concurrent requests (on any instance) cannot pass it
/// together. Returns the seconds to wait (0: allowed, and counted).
pub async fn quota(
    store: &Store,
    pepper: &Pepper,
    kind: &str,
    ip: Option<&str>,
    (allowed, window): (i64, i64),
    now: i64,
) -> Result<i64, StoreError> {
    let start = now - now.rem_euclid(window);
    let end = start + window;
    let key = pepper.digest(
        Purpose::Throttle,
        format!("{kind}:{}:{start}", network(ip)).as_bytes(),
    );
    let n = store.record_failure(&key, now, window).await?;
    Ok(if n > allowed { end - now } else { 0 })
}

/// Seconds between two messages to one mail address.
pub const MAIL_INTERVAL: i64 = 60;

/// Whether a message may go to `email` now: at most one per [`MAIL_INTERVAL`] per address,
/// whoever asks. Extra requests are answered as usual and quietly send nothing, so the limit
/// tells nothing and blocks no one: a message sent at a stranger's request is in the owner's
/// mailbox all the same.
pub async fn mail_allowed(
    store: &Store,
    pepper: &Pepper,
    email: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let key = pepper.digest(
        Purpose::Throttle,
        format!("mail-to:{}", email.trim().to_lowercase()).as_bytes(),
    );
    if store.blocked_until(std::slice::from_ref(&key)).await? > now {
        return Ok(false);
    }
    store.record_failure(&key, now, MAIL_INTERVAL).await?;
    store.block_until(&key, now + MAIL_INTERVAL).await?;
    Ok(true)
}

/// The token, revocation and introspection endpoints: failed client authentication
/// (`invalid_client`; not errors after a client authenticated, which a stranger can provoke by
/// sending a real client a bogus code) is counted per client address in the store; after [`GATE_FREE`] within
/// the window each further one doubles the address's wait, up to [`GATE_MAX_WAIT`]. Counting
/// per client id would let a stranger stall a real client; client secrets are 256-bit, so
/// only scanning is worth slowing, and that comes from addresses.
///
/// These endpoints are hot: each instance remembers an address's `blocked_until` for one
/// second, so a busy client costs one database read a second, and a block set by another
/// instance is seen within a second.
#[derive(Default)]
pub struct TokenGate {
    seen: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
}

/// Failures an address may have at the token endpoint before waits begin.
pub const GATE_FREE: i64 = 20;
/// Longest wait for an address at the token endpoint.
pub const GATE_MAX_WAIT: i64 = 60;
/// Addresses remembered per instance before old entries are dropped.
const GATE_REMEMBERED: usize = 10_000;

impl TokenGate {
    fn key(pepper: &Pepper, ip: Option<&str>) -> String {
        let address = format!("token-ip:{}", network(ip));
        pepper.digest(Purpose::Throttle, address.as_bytes())
    }

    /// Seconds the address must wait (0: go ahead).
    pub async fn wait(
        &self,
        store: &Store,
        pepper: &Pepper,
        ip: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let ip_key = network(ip);
        let cached = self.seen.lock().ok().and_then(|m| m.get(&ip_key).copied());
        let until = match cached {
            Some((checked_at, until)) if checked_at == now => until,
            _ => {
                let until = store.blocked_until(&[Self::key(pepper, ip)]).await?;
                self.remember(ip_key, now, until);
                until
            }
        };
        Ok((until - now).max(0))
    }

    fn remember(&self, ip: String, now: i64, until: i64) {
        if let Ok(mut m) = self.seen.lock() {
            if m.len() >= GATE_REMEMBERED {
                m.retain(|_, (checked_at, until)| *checked_at >= now - 1 || *until > now);
                if m.len() >= GATE_REMEMBERED {
                    m.clear();
                }
            }
            m.insert(ip, (now, until));
        }
    }

    /// Counts a failed request from the address, and blocks it when it is over its allowance.
    pub async fn failed(
        &self,
        store: &Store,
        pepper: &Pepper,
        ip: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = Self::key(pepper, ip);
        let n = store.record_failure(&key, now, WINDOW).await?;
        let wait = if n <= GATE_FREE {
            0
        } else {
            let exp = u32::try_from((n - GATE_FREE).min(20)).unwrap_or(20);
            2i64.saturating_pow(exp).min(GATE_MAX_WAIT)
        };
        if wait > 0 {
            store.block_until(&key, now + wait).await?;
            self.remember(ip.unwrap_or("unknown").to_owned(), now, now + wait);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_and_are_capped() {
        assert_eq!(wait_after(1, 900), 0);
        assert_eq!(wait_after(FREE_FAILURES, 900), 0);
        assert_eq!(wait_after(FREE_FAILURES + 1, 900), 2);
        assert_eq!(wait_after(FREE_FAILURES + 3, 900), 8);
        assert_eq!(wait_after(1000, MAX_ACCOUNT_WAIT), MAX_ACCOUNT_WAIT);
    }

    #[test]
    fn an_ipv6_address_counts_as_its_64() {
        assert_eq!(network(Some("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            network(Some("2001:db8:1:2:ffff::1")),
            network(Some("2001:db8:1:2::9"))
        );
        assert_ne!(
            network(Some("2001:db8:1:2::1")),
            network(Some("2001:db8:1:3::1"))
        );
        assert_eq!(network(Some("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(network(Some("192.0.2.7")), "192.0.2.7");
        assert_eq!(network(None), "unknown");
    }
}
