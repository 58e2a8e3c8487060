//! The SSRF guard: a webhook goes only to public addresses, unless its host
//! is on the allow-list, and the connection goes to the address that was
//! checked.
//!
//! A URL is checked twice. When the task is submitted, its host is resolved
//! and refused if any of its addresses is not public, so the client learns
//! at once. When it is delivered, the HTTP client resolves through
//! [`PinnedResolver`], which checks the addresses again and hands the client
//! only those: a name whose DNS answer changed in between (DNS rebinding)
//! cannot reach an internal address, and no second lookup happens after the
//! check.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which webhook destinations are refused.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressPolicy {
    /// Host names (lower case) and IP literals allowed whatever their
    /// addresses.
    allowed: Arc<HashSet<String>>,
}

/// Why a destination was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The host resolves to an address that is not public.
    #[error("`{host}` resolves to {address}, a {kind} address; webhooks go to public addresses only")]
    NotPublic {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
    /// The host does not resolve.
    #[error("`{host}` does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
}

impl AddressPolicy {
    /// A policy allowing `hosts` (names or IP literals) whatever they
    /// resolve to.
    pub(crate) fn new(hosts: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let allowed = hosts
            .into_iter()
            .map(|h| normalize(h.as_ref()))
            .filter(|h| !h.is_empty())
            .collect();
        Self {
            allowed: Arc::new(allowed),
        }
    }

    fn allows(&self, host: &str) -> bool {
        self.allowed.contains(&normalize(host))
    }

    /// Checks `url`'s host now: resolves it and refuses it if an address
    /// is not public (and the host is not allowed).
    pub(crate) async fn check(&self, url: &Url) -> Result<(), Refusal> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        if self.allows(host) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses = resolve(host, port).await?;
        addresses.iter().try_for_each(|a| self.admit(host, a.ip()))
    }

    fn admit(&self, host: &str, address: IpAddr) -> Result<(), Refusal> {
        match not_public(address) {
            Some(kind) => Err(Refusal::NotPublic {
                host: host.to_owned(),
                address,
                kind,
            }),
            None => Ok(()),
        }
    }
}

/// The resolver of the webhook client: resolves, checks, and returns the
/// checked addresses for the client to connect to.
#[derive(Debug, Clone)]
pub(crate) struct PinnedResolver(pub(crate) AddressPolicy);

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str();
            // The port is the client's to set; resolution only needs one.
            let addresses = resolve(host, 0).await?;
            if !policy.allows(host) {
                addresses.iter().try_for_each(|a| policy.admit(host, a.ip()))?;
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let unresolved = |reason: String| Refusal::Unresolved {
        host: host.to_owned(),
        reason,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .collect();
    if addresses.is_empty() {
        return Err(unresolved("no address".to_owned()));
    }
    Ok(addresses)
}

fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// What kind of non-public address `ip` is, or `None` if it is public.
pub(crate) fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() || (a == 198 && (b & 0xfe) == 18) || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        Some("reserved")
    } else {
        None
    }
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4);
    }
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.segments()[..6] == [0; 6] {
        // ::a.b.c.d, the deprecated IPv4-compatible form.
        Some("IPv4-compatible")
    } else if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address inside decides.
        not_public_v4(Ipv4Addr::from_bits(ip.to_bits() as u32))
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(not_public(ip).is_some(), "{refused} passed");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(not_public(ip), None, "{public} refused");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_their_resolved_addresses() {
        let policy = AddressPolicy::default();
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "http://localhost:8080/x",
            "https://[::ffff:7f00:1]/x",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(
                matches!(policy.check(&url).await, Err(Refusal::NotPublic { .. })),
                "{url}"
            );
        }
        let unknown = Url::parse("http://no-such-host.invalid/x").unwrap();
        assert!(matches!(policy.check(&unknown).await, Err(Refusal::Unresolved { .. })));
        let allowed = AddressPolicy::new(["LocalHost", "[::1]", "127.0.0.1"]);
        for url in ["http://localhost:8080/x", "http://[::1]/x", "http://127.0.0.1:1/x"] {
            assert_eq!(allowed.check(&Url::parse(url).unwrap()).await, Ok(()), "{url}");
        }
    }

    #[tokio::test]
    async fn the_resolver_hands_the_client_only_checked_addresses() {
        let guarded = PinnedResolver(AddressPolicy::default());
        let refused = guarded.resolve("localhost".parse().unwrap()).await;
        let error = refused.err().expect("localhost refused").to_string();
        assert!(error.contains("loopback"), "{error}");
        let allowed = PinnedResolver(AddressPolicy::new(["localhost"]));
        let addresses: Vec<SocketAddr> = allowed
            .resolve("localhost".parse().unwrap())
            .await
            .expect("an allowed host resolves")
            .collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()), "{addresses:?}");
    }
}
