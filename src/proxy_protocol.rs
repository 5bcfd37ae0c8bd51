//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary) in front of
//! an HTTP connection: `--enable-proxy-protocol` /
//! `--http-enable-proxy-protocol`. A load balancer that terminates TCP
//! sends the client's address first; it becomes REMOTE_ADDR and
//! REMOTE_PORT.
//!
//! As in uWSGI, the header is optional on a connection (a request without
//! one is served with the peer's address); one that starts like a PROXY
//! header but is malformed is refused (400 and close). A `LOCAL` (v2) or
//! `UNKNOWN` (v1) header keeps the peer's address (health checks).
//!
//! Pure: bytes in, a verdict out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The connection does not start with a PROXY header.
    Absent,
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A header of `consumed` bytes; the client's (address, port), or None
    /// to keep the peer's (LOCAL / UNKNOWN / a non-IP family).
    Header {
        consumed: usize,
        client: Option<(IpAddr, u16)>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed PROXY protocol header: {0}")]
pub struct Malformed(pub &'static str);

pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Parsed::Incomplete)
        } else {
            v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Ok(Parsed::Incomplete)
        } else {
            v1(buf)
        };
    }
    Ok(Parsed::Absent)
}

fn v1(buf: &[u8]) -> Result<Parsed, Malformed> {
    let Some(end) = memchr::memmem::find(&buf[..buf.len().min(V1_MAX)], b"\r\n") else {
        return if buf.len() < V1_MAX {
            Ok(Parsed::Incomplete)
        } else {
            Err(Malformed("v1 line longer than 107 bytes"))
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| Malformed("v1 line is not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let consumed = end + 2;
    match fields.first().copied() {
        Some("UNKNOWN") => Ok(Parsed::Header {
            consumed,
            client: None,
        }),
        Some(proto @ ("TCP4" | "TCP6")) => {
            let [_, src, dst, sport, dport] = fields[..] else {
                return Err(Malformed("v1 needs protocol, two addresses and two ports"));
            };
            let ip = |s: &str| -> Result<IpAddr, Malformed> {
                let ip: IpAddr = s.parse().map_err(|_| Malformed("v1 address"))?;
                match (proto, ip) {
                    ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
                    _ => Err(Malformed("v1 address of the wrong family")),
                }
            };
            let port = |s: &str| -> Result<u16, Malformed> {
                if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Malformed("v1 port"));
                }
                s.parse().map_err(|_| Malformed("v1 port"))
            };
            let client = (ip(src)?, port(sport)?);
            ip(dst)?;
            port(dport)?;
            Ok(Parsed::Header {
                consumed,
                client: Some(client),
            })
        }
        _ => Err(Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    }
}

fn v2(buf: &[u8]) -> Result<Parsed, Malformed> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Err(Malformed("v2 version is not 2"));
    }
    let consumed = 16 + len;
    if buf.len() < consumed {
        return Ok(Parsed::Incomplete);
    }
    let addr = &buf[16..consumed];
    match ver_cmd & 0x0f {
        0 => {
            return Ok(Parsed::Header {
                consumed,
                client: None,
            })
        }
        1 => {}
        _ => return Err(Malformed("v2 command is not LOCAL or PROXY")),
    }
    let port = |at: usize| u16::from_be_bytes([addr[at], addr[at + 1]]);
    let client = match family >> 4 {
        1 if addr.len() >= 12 => {
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Some((IpAddr::V4(ip), port(8)))
        }
        2 if addr.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[..16]);
            Some((IpAddr::V6(Ipv6Addr::from(octets)), port(32)))
        }
        1 | 2 => return Err(Malformed("v2 address block too short")),
        0 | 3 => None, // AF_UNSPEC, AF_UNIX: keep the peer
        _ => return Err(Malformed("v2 address family")),
    };
    Ok(Parsed::Header { consumed, client })
}

/// The address as the environ shows it (an IPv4-mapped IPv6 address as
/// IPv4, like accepted connections).
pub fn addr_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(consumed: usize, ip: &str, port: u16) -> Parsed {
        Parsed::Header {
            consumed,
            client: Some((ip.parse().unwrap(), port)),
        }
    }

    #[test]
    fn v1_lines() {
        let l = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(l), Ok(header(42, "203.0.113.7", 51234)));
        let l = b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n";
        assert_eq!(parse(l), Ok(header(l.len(), "2001:db8::1", 4000)));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Header {
                consumed: 15,
                client: None
            })
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::Absent));
        assert_eq!(parse(b"P"), Ok(Parsed::Incomplete));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)).is_err());
    }

    fn v2_packet(cmd: u8, fam: u8, addr: &[u8]) -> Vec<u8> {
        let mut p = V2_SIGNATURE.to_vec();
        p.extend([0x20 | cmd, fam]);
        p.extend((addr.len() as u16).to_be_bytes());
        p.extend(addr);
        p
    }

    #[test]
    fn v2_packets() {
        let mut a = vec![198, 51, 100, 9, 10, 0, 0, 1];
        a.extend(40000u16.to_be_bytes());
        a.extend(80u16.to_be_bytes());
        let p = v2_packet(1, 0x11, &a);
        assert_eq!(parse(&p), Ok(header(28, "198.51.100.9", 40000)));
        assert_eq!(parse(&p[..20]), Ok(Parsed::Incomplete));
        assert_eq!(parse(&p[..8]), Ok(Parsed::Incomplete));
        let mut a6 = vec![0u8; 32];
        a6[15] = 1;
        a6.extend(5555u16.to_be_bytes());
        a6.extend(443u16.to_be_bytes());
        assert_eq!(parse(&v2_packet(1, 0x21, &a6)), Ok(header(52, "::1", 5555)));
        let local = v2_packet(0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                consumed: 16,
                client: None
            })
        );
        assert!(parse(&v2_packet(1, 0x11, &[1, 2, 3])).is_err());
        assert!(parse(&v2_packet(5, 0x11, &a)).is_err());
        let mut bad_version = v2_packet(1, 0x11, &a);
        bad_version[12] = 0x31;
        assert!(parse(&bad_version).is_err());
    }

    #[test]
    fn mapped_addresses_read_as_ipv4() {
        assert_eq!(addr_text("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(addr_text("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }
}
