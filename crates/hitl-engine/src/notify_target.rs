//! Where a notification may go. The operator sends from inside the cluster, so a channel that
//! names loopback, link-local (cloud metadata), the cluster's Service or Pod addresses would let
//! whoever writes channels probe and POST to what only the cluster can reach. These addresses are
//! refused unless the namespace owner's `WorkflowPolicy` lists the host. Pure: the controller
//! resolves the name, asks here about every address, and connects to the checked ones.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range (`10.96.0.0/12`, `fd00::/108`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address range such as 10.96.0.0/12");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix(u32::from(n).into(), u32::from(a).into(), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => same_prefix(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let host_bits = bits - u32::from(prefix);
    host_bits >= bits || (a >> host_bits) == (b >> host_bits)
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) reaches the IPv4 address: judge that.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The cluster's own address ranges, from the operator's flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterRanges {
    pub services: Vec<Cidr>,
    pub pods: Vec<Cidr>,
}

/// Why an address may not be a notification's target, or None when it may. The words go into the
/// recorded error, so the namespace owner sees which rule refused it.
pub fn refused_address(ip: IpAddr, cluster: &ClusterRanges) -> Option<&'static str> {
    let ip = canonical(ip);
    let kind = match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local (cloud metadata)",
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => "unspecified",
        IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => "multicast or broadcast",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_unicast_link_local() => "link-local (cloud metadata)",
        IpAddr::V6(v6) if v6.is_unspecified() => "unspecified",
        IpAddr::V6(v6) if v6.is_multicast() => "multicast or broadcast",
        _ if cluster.services.iter().any(|c| c.contains(ip)) => "in the cluster's Service range",
        _ if cluster.pods.iter().any(|c| c.contains(ip)) => "in the cluster's Pod range",
        _ => return None,
    };
    Some(kind)
}

/// The host as a URL or channel names it, for comparing with the policy's list: lower case,
/// without the brackets of an IPv6 literal or a trailing dot.
pub fn normalized_host(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// The namespace owner listed this host (`WorkflowPolicy` `notificationHosts`): its addresses are
/// not checked. Exact names only, so listing `hooks.internal` allows no other name.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = normalized_host(host);
    allowed.iter().any(|a| normalized_host(a) == host)
}

/// Every address the name resolved to must pass: a name with one public and one internal address
/// would otherwise reach the internal one on some connections. The error names the host and the
/// rule, never a port.
pub fn check_addresses(host: &str, addrs: &[IpAddr], cluster: &ClusterRanges) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("the host {host} has no address"));
    }
    match addrs.iter().find_map(|ip| refused_address(*ip, cluster).map(|why| (ip, why))) {
        None => Ok(()),
        Some((ip, why)) => Err(format!(
            "the target {host} ({ip}) is {why}, which notifications may not reach; the namespace owner \
             may allow the host in WorkflowPolicy/default spec.notificationHosts"
        )),
    }
}

/// SMTP credentials go over TLS only. Plain text needs the channel's `tls: None` and the namespace
/// owner's `allowPlaintextCredentials`: the password would otherwise cross the network readable.
pub fn plaintext_credentials_refused(plaintext: bool, has_credentials: bool, allowed: bool) -> Option<String> {
    (plaintext && has_credentials && !allowed).then(|| {
        "email: credentialsSecret is set and tls is None: credentials are sent only over TLS, unless the \
         namespace owner sets WorkflowPolicy/default spec.allowPlaintextCredentials: true"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterRanges {
        ClusterRanges { services: vec!["10.96.0.0/12".parse().unwrap()], pods: vec!["10.244.0.0/16".parse().unwrap()] }
    }

    fn why(ip: &str) -> Option<&'static str> {
        refused_address(ip.parse().unwrap(), &cluster())
    }

    #[test]
    fn internal_addresses_are_refused_each_with_its_rule() {
        for (ip, rule) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("fe80::1", "link-local (cloud metadata)"),
            ("febf::1", "link-local (cloud metadata)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast or broadcast"),
            ("255.255.255.255", "multicast or broadcast"),
            ("ff02::1", "multicast or broadcast"),
            ("10.96.0.1", "in the cluster's Service range"),
            ("10.111.255.255", "in the cluster's Service range"),
            ("::ffff:10.96.0.10", "in the cluster's Service range"),
            ("10.244.3.7", "in the cluster's Pod range"),
        ] {
            assert_eq!(why(ip), Some(rule), "{ip}");
        }
    }

    #[test]
    fn other_addresses_pass() {
        for ip in
            ["93.184.215.14", "10.95.255.255", "10.112.0.0", "10.245.0.1", "192.168.1.10", "2001:db8::1", "fec0::1"]
        {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn ranges_parse_and_match_by_prefix() {
        let v6: Cidr = "fd00:10:96::/112".parse().unwrap();
        assert!(v6.contains("fd00:10:96::ffff".parse().unwrap()));
        assert!(!v6.contains("fd00:10:97::1".parse().unwrap()));
        assert!(!v6.contains("10.96.0.1".parse().unwrap()), "families never mix");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.96.0.0", "10.96.0.0/33", "ten/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_resolved_address_must_pass() {
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(check_addresses("hooks.example", &[public], &cluster()), Ok(()));
        let refused = check_addresses("hooks.example", &[public, metadata], &cluster()).unwrap_err();
        assert!(refused.starts_with("the target hooks.example (169.254.169.254) is link-local"), "{refused}");
        assert!(refused.contains("spec.notificationHosts"), "{refused}");
        assert!(check_addresses("nothing.example", &[], &cluster()).is_err());
    }

    #[test]
    fn only_the_exact_hosts_listed_are_allowed() {
        let allowed = vec!["127.0.0.1".to_string(), "Hooks.Internal".to_string(), "::1".to_string()];
        assert!(host_allowed("127.0.0.1", &allowed));
        assert!(host_allowed("hooks.internal.", &allowed));
        assert!(host_allowed("[::1]", &allowed));
        assert!(!host_allowed("evil.hooks.internal", &allowed));
        assert!(!host_allowed("127.0.0.2", &allowed));
        assert!(!host_allowed("localhost", &[]));
    }

    #[test]
    fn credentials_go_in_plain_text_only_where_the_owner_allows_it() {
        assert!(plaintext_credentials_refused(true, true, false).unwrap().contains("allowPlaintextCredentials"));
        assert_eq!(plaintext_credentials_refused(true, true, true), None);
        assert_eq!(plaintext_credentials_refused(true, false, false), None, "nothing secret is sent");
        assert_eq!(plaintext_credentials_refused(false, true, false), None, "TLS");
    }
}
