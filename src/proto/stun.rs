//! Just enough STUN (RFC 8489) to route a datagram on the shared WebRTC port: whether it is
//! STUN at all, and the `USERNAME` of a binding request, whose first half is the ICE ufrag
//! that onair put in its answer (RFC 8445 section 7.2.2). str0m does the real STUN work
//! inside the session this picks.

/// The magic cookie every STUN message carries at bytes 4..8.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER: usize = 20;
const USERNAME: u16 = 0x0006;

/// Whether a datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3, cookie).
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= HEADER && d[0] < 4 && d[4..8] == MAGIC_COOKIE
}

/// The local (our) ufrag of a STUN message's `USERNAME` (`ours:theirs`), when it has one.
pub fn local_ufrag(d: &[u8]) -> Option<&str> {
    if !is_stun(d) {
        return None;
    }
    let len = u16::from_be_bytes([d[2], d[3]]) as usize;
    let body = d.get(HEADER..HEADER + len)?;
    let mut pos = 0;
    while pos + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[pos], body[pos + 1]]);
        let alen = u16::from_be_bytes([body[pos + 2], body[pos + 3]]) as usize;
        let value = body.get(pos + 4..pos + 4 + alen)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next();
        }
        pos += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, then USERNAME (padded).
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend(attrs);
        m
    }

    #[test]
    fn usernames_are_found() {
        assert_eq!(local_ufrag(&binding(b"srv1:cli2")), Some("srv1"));
        assert_eq!(local_ufrag(&binding(b"abc")), Some("abc"));
        let mut no_user = binding(b"x:y");
        no_user.truncate(28);
        no_user[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(local_ufrag(&no_user), None);
    }

    #[test]
    fn garbage_is_not_stun() {
        assert!(!is_stun(b"hello"));
        assert!(!is_stun(&[0x80; 40])); // RTP
        assert!(!is_stun(&[22; 40])); // DTLS
        let mut short = binding(b"a:b");
        short[3] = 200; // length past the end
        assert_eq!(local_ufrag(&short), None);
        let mut odd = binding(b"a:b");
        let n = odd.len();
        odd[n - 6] = 0xff; // attribute length past the end
        assert_eq!(local_ufrag(&odd), None);
    }
}
