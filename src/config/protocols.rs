//! SPEC section 14's keys: `server.trusted_proxies` (CIDRs) and `upstream.protocol`.

use std::net::IpAddr;

/// Which HTTP version the proxy speaks to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/2 when an `https` upstream offers it by ALPN, else HTTP/1.1 (always for `http`).
    Auto,
    Http1,
    /// HTTP/2 over TLS, or with prior knowledge (h2c) for `http`.
    Http2,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Auto => "auto",
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::Http2 => "http2",
        }
    }
}

/// An address block (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `ADDR/LEN` or a bare address (all its bits). Host bits must be zero, so a typo
    /// like `10.1.2.3/8` is an error rather than a silently wider block.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?}: prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { net, prefix };
        if !cidr.contains(net) || masked(net, prefix) != bits(net) {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}/{prefix}?",
                from_bits(net, masked(net, prefix))
            ));
        }
        Ok(cidr)
    }

    /// Is `ip` in this block? An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as a dual-stack
    /// socket reports IPv4 peers) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && masked(ip, self.prefix) == bits(self.net)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn masked(ip: IpAddr, prefix: u8) -> u128 {
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let host = width - u32::from(prefix);
    let mask = if host >= 128 { 0 } else { u128::MAX << host };
    bits(ip) & mask
}

fn from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(b.into()),
    }
}

/// `server.trusted_proxies`: every entry a CIDR block or an address. `Err`: the key and the
/// message.
pub(super) fn trusted_proxies(raw: Option<&[String]>) -> Result<Vec<Cidr>, (String, String)> {
    raw.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| Cidr::parse(s).map_err(|m| (format!("server.trusted_proxies[{i}]"), m)))
        .collect()
}

/// `upstream.protocol`. `Err`: the message.
pub(super) fn upstream_protocol(raw: Option<&str>) -> Result<UpstreamProtocol, String> {
    match raw.unwrap_or("auto") {
        "auto" => Ok(UpstreamProtocol::Auto),
        "http1" => Ok(UpstreamProtocol::Http1),
        "http2" => Ok(UpstreamProtocol::Http2),
        other => Err(format!(
            "{other:?} is not one of \"auto\", \"http1\", \"http2\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::a00:1")), "IPv6 is not IPv4");
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert_eq!(
            Cidr::parse(" 127.0.0.1/32").unwrap().to_string(),
            "127.0.0.1/32"
        );
    }

    #[test]
    fn keys_parse_and_bad_values_name_their_key() {
        use crate::config::{Config, UNIT_TEST_CONFIG};
        let c = Config::parse(UNIT_TEST_CONFIG, "t.toml").unwrap();
        assert!(
            c.server.trusted_proxies.is_empty(),
            "default: trust no peer"
        );
        assert_eq!(c.upstream.unwrap().protocol, UpstreamProtocol::Auto);
        let text = UNIT_TEST_CONFIG
            .replace(
                "[server]",
                "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
            )
            .replace("[upstream]", "[upstream]\nprotocol = \"http2\"");
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(
            c.upstream.as_ref().unwrap().protocol,
            UpstreamProtocol::Http2
        );
        assert!(c.summary().contains("protocol=http2"), "{}", c.summary());
        assert!(c.summary().contains("10.0.0.0/8"), "{}", c.summary());
        for (text, key) in [
            (
                UNIT_TEST_CONFIG.replace(
                    "[server]",
                    "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"x\"]",
                ),
                "server.trusted_proxies[1]",
            ),
            (
                UNIT_TEST_CONFIG.replace("[upstream]", "[upstream]\nprotocol = \"h3\""),
                "upstream.protocol",
            ),
        ] {
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert_eq!(e.file, "t.toml");
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "10.1.2.3/8",
            "nope",
            "10.0.0.0/",
            "fd00::1/8",
            "/8",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }
}
