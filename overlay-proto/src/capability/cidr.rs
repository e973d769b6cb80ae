//! `IpCidr` networks, parsed with the reference's grammar (the `ipnet` crate's parser).
//!
//! - `addr/len` with an explicit prefix length (IPv4: 1–2 digits, < 33; IPv6: 1–3 digits, < 129);
//! - IPv4 octets of 1–3 decimal digits below 256 (leading zeros allowed);
//! - IPv6 groups of 1–4 hex digits, one `::`, an embedded dotted quad only after `::` or as
//!   the last two groups;
//! - host bits may be set; IPv4 networks never contain IPv6 addresses (mapped ones included).

use core::net::IpAddr;

/// A parsed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

impl Net {
    /// Parses `addr/len`; `None` when the text is not exactly a network.
    pub(crate) fn parse(text: &str) -> Option<Net> {
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
        };
        let net = match p.atomically(Parser::v4_net) {
            Some(net) => net,
            None => p.atomically(Parser::v6_net)?,
        };
        (p.pos == p.s.len()).then_some(net)
    }

    /// Whether `ip` lies inside this network (same address family only).
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        match (*self, ip) {
            (Net::V4(net, len), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(*a) & mask == net & mask
            }
            (Net::V6(net, len), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(*a) & mask == net & mask
            }
            _ => false,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// Runs `f`; on `None` the position is restored.
    fn atomically<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let pos = self.pos;
        let r = f(self);
        if r.is_none() {
            self.pos = pos;
        }
        r
    }

    fn given(&mut self, c: u8) -> Option<()> {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    fn digit(&mut self, radix: u32) -> Option<u32> {
        let d = char::from(*self.s.get(self.pos)?).to_digit(radix)?;
        self.pos += 1;
        Some(d)
    }

    /// Greedy number: fails when it has more than `max_digits` digits or reaches `upto`.
    fn number(&mut self, radix: u32, max_digits: u32, upto: u32) -> Option<u32> {
        self.atomically(|p| {
            let (mut value, mut count) = (0u32, 0u32);
            while let Some(d) = p.digit(radix) {
                value = value.checked_mul(radix)?.checked_add(d)?;
                count += 1;
                if count > max_digits || value >= upto {
                    return None;
                }
            }
            (count > 0).then_some(value)
        })
    }

    fn v4_addr(&mut self) -> Option<[u8; 4]> {
        self.atomically(|p| {
            let mut octets = [0u8; 4];
            for (i, octet) in octets.iter_mut().enumerate() {
                if i != 0 {
                    p.given(b'.')?;
                }
                *octet = u8::try_from(p.number(10, 3, 0x100)?).ok()?;
            }
            Some(octets)
        })
    }

    /// Up to `limit` groups; `(count, ended_with_dotted_quad)`.
    fn groups(&mut self, out: &mut [u16; 8], limit: usize) -> (usize, bool) {
        let mut i = 0;
        while i < limit {
            if i + 1 < limit {
                let quad = self.atomically(|p| {
                    if i != 0 {
                        p.given(b':')?;
                    }
                    p.v4_addr()
                });
                if let Some(o) = quad {
                    if let Some(pair) = out.get_mut(i..i + 2) {
                        pair[0] = u16::from_be_bytes([o[0], o[1]]);
                        pair[1] = u16::from_be_bytes([o[2], o[3]]);
                    }
                    return (i + 2, true);
                }
            }
            let group = self.atomically(|p| {
                if i != 0 {
                    p.given(b':')?;
                }
                p.number(16, 4, 0x10000).and_then(|n| u16::try_from(n).ok())
            });
            match (group, out.get_mut(i)) {
                (Some(g), Some(slot)) => *slot = g,
                _ => return (i, false),
            }
            i += 1;
        }
        (i, false)
    }

    fn v6_addr(&mut self) -> Option<u128> {
        self.atomically(|p| {
            let mut head = [0u16; 8];
            let (head_len, head_quad) = p.groups(&mut head, 8);
            let mut all = [0u16; 8];
            if head_len == 8 {
                all = head;
            } else {
                if head_quad {
                    return None;
                }
                p.given(b':')?;
                p.given(b':')?;
                let mut tail = [0u16; 8];
                let (tail_len, _) = p.groups(&mut tail, 8 - head_len);
                all.get_mut(..head_len)?
                    .copy_from_slice(head.get(..head_len)?);
                all.get_mut(8 - tail_len..)?
                    .copy_from_slice(tail.get(..tail_len)?);
            }
            Some(
                all.iter()
                    .fold(0u128, |acc, g| (acc << 16) | u128::from(*g)),
            )
        })
    }

    fn v4_net(&mut self) -> Option<Net> {
        let addr = self.v4_addr()?;
        self.given(b'/')?;
        let len = self.number(10, 2, 33)?;
        Some(Net::V4(u32::from_be_bytes(addr), u8::try_from(len).ok()?))
    }

    fn v6_net(&mut self) -> Option<Net> {
        let addr = self.v6_addr()?;
        self.given(b'/')?;
        let len = self.number(10, 3, 129)?;
        Some(Net::V6(addr, u8::try_from(len).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn grammar() {
        let ok = [
            ("10.0.0.0/8", Net::V4(0x0a00_0000, 8)),
            ("10.1.2.99/8", Net::V4(0x0a01_0263, 8)),
            ("010.001.0.0/08", Net::V4(0x0a01_0000, 8)),
            ("0.0.0.0/0", Net::V4(0, 0)),
            ("1.2.3.4/32", Net::V4(0x0102_0304, 32)),
            ("::/0", Net::V6(0, 0)),
            ("::1/128", Net::V6(1, 128)),
            ("2001:db8::/32", Net::V6(0x2001_0db8 << 96, 32)),
            ("::ffff:10.1.2.3/96", Net::V6(0xffff_0a01_0203, 96)),
            (
                "1:2:3:4:5:6:1.2.3.4/64",
                Net::V6(0x0001_0002_0003_0004_0005_0006_0102_0304, 64),
            ),
            (
                "1:2:3:4:5:6:7::/64",
                Net::V6(0x0001_0002_0003_0004_0005_0006_0007_0000, 64),
            ),
            ("ABCD::/016", Net::V6(0xabcd << 112, 16)),
        ];
        for (text, net) in ok {
            assert_eq!(Net::parse(text), Some(net), "{text}");
        }
        let bad = [
            "10.1.2.3",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/008",
            "10.0.0/8",
            "256.0.0.0/8",
            "1.2.3.4.5/8",
            "0001.2.3.4/8",
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "10.0.0.0/+8",
            "::/129",
            "::/0128",
            "1:2:3:4:5:6:7:8:9/64",
            "1::2::3/64",
            "1.2.3.4::/64",
            "12345::/16",
            "::ffff:10.1.2/96",
            "",
            "/8",
            "10.0.0.0/8/8",
            "ａ::/8",
        ];
        for text in bad {
            assert_eq!(Net::parse(text), None, "{text}");
        }
    }

    #[test]
    fn containment() {
        let v4 = Net::parse("10.1.2.99/8").unwrap();
        assert!(v4.contains(&ip("10.255.0.1")));
        assert!(!v4.contains(&ip("11.0.0.0")));
        assert!(!v4.contains(&ip("::ffff:10.1.2.3")));
        let all = Net::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(&ip("255.255.255.255")));
        assert!(!all.contains(&ip("::1")));
        let v6 = Net::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(&ip("2001:db8::1")));
        assert!(!v6.contains(&ip("2001:db9::1")));
        assert!(!v6.contains(&ip("10.0.0.1")));
        let host = Net::parse("1.2.3.4/32").unwrap();
        assert!(host.contains(&ip("1.2.3.4")));
        assert!(!host.contains(&ip("1.2.3.5")));
    }
}
