//! The SRT stream id (`SRTO_STREAMID`, what a caller puts after `?streamid=`) read as a publish
//! request with a stream key. The forms of CONTRACT.md, as SRS and MediaMTX users write them:
//!
//! - `#!::r={app}/{key},m=publish` (the SRT access control syntax; `r` is the resource, `m` the
//!   mode; other keys such as `u`, `s`, `h`, `t` are ignored). Without `m` the request is taken
//!   as a publish: onair only ingests over SRT.
//! - `publish:{key}` (MediaMTX).
//! - the bare key.
//!
//! In every form the resource may carry the RTMP application in front (`live/{key}`), so that
//! one URL shape works for both protocols. Playback requests (`m=request`, `read:`) are refused:
//! onair plays over HLS.

/// Why a stream id names no stream to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("no streamid (set ?streamid=publish:KEY)")]
    Empty,
    #[error("the streamid names no stream key")]
    NoKey,
    #[error("the streamid names an application other than rtmp.app")]
    WrongApp,
    #[error("the streamid asks to play; playback is offered over HLS only")]
    Play,
    #[error("the streamid's mode is neither publish nor request")]
    Mode,
}

/// The stream key a stream id publishes with, `app` being `rtmp.app`.
pub fn publish_key<'a>(streamid: &'a str, app: &str) -> Result<&'a str, StreamIdError> {
    if streamid.is_empty() {
        return Err(StreamIdError::Empty);
    }
    let resource = if let Some(pairs) = streamid.strip_prefix("#!::") {
        let mut resource = None;
        for pair in pairs.split(',') {
            match pair.split_once('=') {
                Some(("r", v)) => resource = Some(v),
                Some(("m", "publish")) => {}
                Some(("m", "request")) => return Err(StreamIdError::Play),
                Some(("m", _)) => return Err(StreamIdError::Mode),
                _ => {}
            }
        }
        resource.ok_or(StreamIdError::NoKey)?
    } else if let Some(rest) = streamid.strip_prefix("publish:") {
        rest
    } else if streamid.starts_with("read:") {
        return Err(StreamIdError::Play);
    } else {
        streamid
    };
    let key = match resource.split_once('/') {
        Some((first, rest)) if first == app => rest,
        Some(_) => return Err(StreamIdError::WrongApp),
        None => resource,
    };
    if key.is_empty() {
        return Err(StreamIdError::NoKey);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use StreamIdError::*;

    #[test]
    fn forms_of_the_contract() {
        let cases: &[(&str, Result<&str, StreamIdError>)] = &[
            ("#!::r=live/k3y,m=publish", Ok("k3y")),
            ("#!::m=publish,r=live/k3y", Ok("k3y")),
            ("#!::r=live/k3y", Ok("k3y")),
            ("#!::r=k3y,m=publish,u=alice", Ok("k3y")),
            ("#!::r=live/k3y,m=request", Err(Play)),
            ("#!::r=live/k3y,m=bidirectional", Err(Mode)),
            ("#!::m=publish", Err(NoKey)),
            ("#!::r=live/,m=publish", Err(NoKey)),
            ("#!::r=other/k3y,m=publish", Err(WrongApp)),
            ("publish:k3y", Ok("k3y")),
            ("publish:live/k3y", Ok("k3y")),
            ("publish:", Err(NoKey)),
            ("read:k3y", Err(Play)),
            ("k3y", Ok("k3y")),
            ("live/k3y", Ok("k3y")),
            ("live/with/slash", Ok("with/slash")),
            ("elsewhere/k3y", Err(WrongApp)),
            ("", Err(Empty)),
        ];
        for (sid, want) in cases {
            assert_eq!(publish_key(sid, "live"), *want, "{sid}");
        }
    }
}
