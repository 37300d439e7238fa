//! File names of HLS media objects (segments, parts, init segments), unique per broadcast so
//! that any HTTP cache in front (nginx `proxy_cache`, a CDN, a browser) may keep them for good.
//!
//! Every rendition the store creates gets a random [`Epoch`]; its objects are named
//! `{epoch}-{msn}.ts`, `{epoch}-{msn}.m4s`, `{epoch}-{msn}.{part}.m4s` and
//! `{epoch}-init-{n}.mp4`. Within an epoch the store never reuses a number (sequence numbers
//! only grow, parts are appended, init numbers are the store's own counter), so a name always
//! means the same bytes; a new broadcast after the linger period, a rendition shed and
//! restored, or a restarted node gets a new epoch, so it can never be served an old broadcast's
//! cached object. The store refuses a name of another epoch. Pure: parsing and formatting only.

use std::fmt;

/// Random tag of one rendition's life in the store (12 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

const EPOCH_BITS: u32 = 48;

impl Epoch {
    /// A fresh random epoch.
    pub fn random() -> Epoch {
        Epoch(rand::random::<u64>() >> (64 - EPOCH_BITS))
    }

    /// An epoch with a given value (tests, fuzzing).
    pub fn from_raw(v: u64) -> Epoch {
        Epoch(v & ((1 << EPOCH_BITS) - 1))
    }

    fn parse(s: &str) -> Option<Epoch> {
        (s.len() == 12
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| u64::from_str_radix(s, 16).ok().map(Epoch))
        .flatten()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

/// A media object a client may ask for, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaName {
    pub epoch: Epoch,
    pub kind: MediaKind,
}

/// What a [`MediaName`] names within its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `{msn}.ts` or `{msn}.m4s`.
    Segment(u64),
    /// `{msn}.{part}.m4s`.
    Part(u64, u64),
    /// `init-{n}.mp4`.
    Init(u32),
}

fn num(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl MediaName {
    /// Parses a segment, part or init file name; anything else is `None`.
    pub fn parse(name: &str) -> Option<MediaName> {
        let (epoch, rest) = name.split_once('-')?;
        let epoch = Epoch::parse(epoch)?;
        let kind = if let Some(n) = rest
            .strip_prefix("init-")
            .and_then(|r| r.strip_suffix(".mp4"))
        {
            MediaKind::Init(num(n).and_then(|n| u32::try_from(n).ok())?)
        } else if let Some(stem) = rest.strip_suffix(".ts") {
            MediaKind::Segment(num(stem)?)
        } else {
            let stem = rest.strip_suffix(".m4s")?;
            match stem.split_once('.') {
                None => MediaKind::Segment(num(stem)?),
                Some((m, p)) => MediaKind::Part(num(m)?, num(p)?),
            }
        };
        Some(MediaName { epoch, kind })
    }

    pub fn content_type(&self) -> &'static str {
        match self.kind {
            MediaKind::Init(_) => "video/mp4",
            MediaKind::Part(..) => "video/iso.segment",
            MediaKind::Segment(_) => "",
        }
    }
}

/// `{epoch}-{msn}.ts` or `{epoch}-{msn}.m4s`.
pub fn segment(epoch: Epoch, msn: u64, ts: bool) -> String {
    format!("{epoch}-{msn}.{}", if ts { "ts" } else { "m4s" })
}

/// `{epoch}-{msn}.{part}.m4s`.
pub fn part(epoch: Epoch, msn: u64, part: usize) -> String {
    format!("{epoch}-{msn}.{part}.m4s")
}

/// `{epoch}-init-{n}.mp4`.
pub fn init(epoch: Epoch, n: u32) -> String {
    format!("{epoch}-init-{n}.mp4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_names() {
        let e = Epoch::from_raw(0x0a1b2c3d4e5f);
        assert_eq!(e.to_string(), "0a1b2c3d4e5f");
        let name = |kind| Some(MediaName { epoch: e, kind });
        let cases = [
            ("0a1b2c3d4e5f-12.ts", name(MediaKind::Segment(12))),
            ("0a1b2c3d4e5f-12.m4s", name(MediaKind::Segment(12))),
            ("0a1b2c3d4e5f-12.3.m4s", name(MediaKind::Part(12, 3))),
            ("0a1b2c3d4e5f-init-2.mp4", name(MediaKind::Init(2))),
            ("0a1b2c3d4e5f-init-.mp4", None),
            ("0a1b2c3d4e5f-12..m4s", None),
            ("0a1b2c3d4e5f-.3.m4s", None),
            ("0a1b2c3d4e5f-12.3.ts", None),
            ("0a1b2c3d4e5f-1.2.3.m4s", None),
            ("0a1b2c3d4e5f-x.ts", None),
            ("0a1b2c3d4e5f-99999999999999999999.ts", None),
            ("0a1b2c3d4e5f-12.mp4", None),
            ("0A1B2C3D4E5F-12.ts", None),
            ("a1b2c3d4e5f-12.ts", None),
            ("12.ts", None),
            ("12.3.m4s", None),
            ("init-2.mp4", None),
            ("-12.ts", None),
        ];
        for (n, want) in cases {
            assert_eq!(MediaName::parse(n), want, "{n}");
        }
    }

    #[test]
    fn formatted_names_parse_back() {
        let e = Epoch::random();
        let cases = [
            (segment(e, 7, true), MediaKind::Segment(7)),
            (segment(e, 7, false), MediaKind::Segment(7)),
            (part(e, 7, 4), MediaKind::Part(7, 4)),
            (init(e, 3), MediaKind::Init(3)),
        ];
        for (n, kind) in cases {
            assert_eq!(
                MediaName::parse(&n),
                Some(MediaName { epoch: e, kind }),
                "{n}"
            );
        }
        assert_ne!(Epoch::random(), Epoch::random());
    }
}
