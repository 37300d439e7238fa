//! Enhanced RTMP in `connect`: what the client declares in its command object (E-RTMP v1
//! `fourCcList`, v2 `videoFourCcInfoMap` / `audioFourCcInfoMap` / `capsEx`) and what the server
//! states back in its `_result` command object, in both forms.
//!
//! `rml_rtmp` writes the `_result` itself, with fixed properties (`fmsVer`, `capabilities`) and no
//! way to add any, and its `ConnectionRequested` event does not carry the command object. So the
//! connection reads the client's properties from the `connect` message before the session sees
//! it ([`ClientCaps::from_connect_message`]), and [`amend_connect_result`] rewrites the one packet
//! `rml_rtmp` produces for the accepted connect: the same chunk stream, header type, timestamp,
//! message type and stream id, only the length and the AMF0 body change. `rml_rtmp`'s serializer
//! still remembers its own length for that chunk stream; that is harmless because every header it
//! can choose after a message of another length carries the length again (type 0 or 1), and the
//! next command on that chunk stream (`createStream`'s `_result`, about 30 bytes) is never as long
//! as a `connect` `_result`.

use rml_amf0::Amf0Value;

use super::{AUDIO_FOURCCS, VIDEO_FOURCCS};

/// What a client says it can do in `connect` (E-RTMP v1 `fourCcList`, v2
/// `videoFourCcInfoMap` / `audioFourCcInfoMap` / `capsEx`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCaps {
    /// FourCCs the client listed, from whichever property it used.
    pub fourccs: Vec<String>,
    pub caps_ex: Option<u32>,
}

impl ClientCaps {
    /// Reads the properties of a connect command object.
    pub fn from_command_object(object: &Amf0Value) -> ClientCaps {
        let mut caps = ClientCaps::default();
        let Amf0Value::Object(props) = object else {
            return caps;
        };
        if let Some(Amf0Value::StrictArray(list)) = props.get("fourCcList") {
            for v in list {
                if let Amf0Value::Utf8String(s) = v {
                    caps.fourccs.push(s.clone());
                }
            }
        }
        for key in ["videoFourCcInfoMap", "audioFourCcInfoMap"] {
            if let Some(Amf0Value::Object(map)) = props.get(key) {
                let mut names: Vec<&String> = map.keys().collect();
                names.sort();
                for k in names {
                    if !caps.fourccs.contains(k) {
                        caps.fourccs.push(k.clone());
                    }
                }
            }
        }
        if let Some(Amf0Value::Number(n)) = props.get("capsEx") {
            caps.caps_ex = Some(*n as u32);
        }
        caps
    }

    /// Whether the client speaks Enhanced RTMP at all.
    pub fn enhanced(&self) -> bool {
        !self.fourccs.is_empty() || self.caps_ex.is_some()
    }
}

/// FourCcInfoMask of E-RTMP v2.
const CAN_DECODE: f64 = 1.0;
const CAN_FORWARD: f64 = 4.0;
/// CapsExMask: onair reads multitrack messages (one track of each kind) and ModEx packets.
const CAPS_EX_MULTITRACK: u32 = 0x02;
const CAPS_EX_MOD_EX: u32 = 0x04;

/// The properties a server adds to its `connect` `_result` command object to state its E-RTMP
/// support, in both forms: `fourCcList` (v1) and the v2 info maps with `capsEx`.
pub fn server_caps() -> Vec<(String, Amf0Value)> {
    let list = VIDEO_FOURCCS
        .iter()
        .chain(AUDIO_FOURCCS.iter())
        .map(|f| Amf0Value::Utf8String(f.to_string()))
        .collect();
    let map = |fourccs: &[&str], flags: &dyn Fn(&str) -> f64| {
        Amf0Value::Object(
            fourccs
                .iter()
                .map(|f| (f.to_string(), Amf0Value::Number(flags(f))))
                .collect(),
        )
    };
    // Video is passed through (forward) and decoded for the ladder; Opus is decoded to AAC.
    let video = map(&VIDEO_FOURCCS, &|_| CAN_DECODE + CAN_FORWARD);
    let audio = map(&AUDIO_FOURCCS, &|f| {
        if f == "Opus" {
            CAN_DECODE
        } else {
            CAN_DECODE + CAN_FORWARD
        }
    });
    vec![
        ("fourCcList".into(), Amf0Value::StrictArray(list)),
        ("videoFourCcInfoMap".into(), video),
        ("audioFourCcInfoMap".into(), audio),
        (
            "capsEx".into(),
            Amf0Value::Number((CAPS_EX_MULTITRACK | CAPS_EX_MOD_EX) as f64),
        ),
    ]
}

/// Why a `_result` packet could not be amended (the caller then sends it as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmendError {
    #[error("the packet ends inside a chunk")]
    Truncated,
    #[error("chunk header type {fmt} carries no message length")]
    NoLength { fmt: u8 },
    #[error("the body is not an AMF0 command with a command object")]
    NotACommand,
}

impl ClientCaps {
    /// Reads the client's capabilities from the payload of an AMF0 `connect` command message.
    /// `None` for any other message.
    pub fn from_connect_message(payload: &[u8]) -> Option<ClientCaps> {
        let mut reader = payload;
        let values = rml_amf0::deserialize(&mut reader).ok()?;
        match values.as_slice() {
            [Amf0Value::Utf8String(name), _, object, ..] if name == "connect" => {
                Some(ClientCaps::from_command_object(object))
            }
            _ => None,
        }
    }
}

/// Rewrites one serialized `_result` message (its chunks, as `rml_rtmp` wrote them with chunk
/// size `chunk_size`) with `extra` properties added to its command object.
pub fn amend_connect_result(
    packet: &[u8],
    chunk_size: usize,
    extra: Vec<(String, Amf0Value)>,
) -> Result<Vec<u8>, AmendError> {
    let chunk_size = chunk_size.max(1);
    let first = *packet.first().ok_or(AmendError::Truncated)?;
    let fmt = first >> 6;
    let basic_len = match first & 0x3f {
        0 => 2,
        1 => 3,
        _ => 1,
    };
    let header_len = match fmt {
        0 => 11,
        1 => 7,
        _ => return Err(AmendError::NoLength { fmt }),
    };
    let h = packet
        .get(basic_len..basic_len + header_len)
        .ok_or(AmendError::Truncated)?;
    let extended = h[0..3] == [0xff, 0xff, 0xff];
    let length = ((h[3] as usize) << 16) | ((h[4] as usize) << 8) | h[5] as usize;
    let mut pos = basic_len + header_len + if extended { 4 } else { 0 };
    let ext_ts = packet
        .get(pos - if extended { 4 } else { 0 }..pos)
        .ok_or(AmendError::Truncated)?
        .to_vec();
    // Continuation chunks: a type-3 basic header (and the extended timestamp again).
    let continuation_len = basic_len + ext_ts.len();
    let mut body = Vec::with_capacity(length);
    while body.len() < length {
        if !body.is_empty() {
            pos += continuation_len;
        }
        let take = (length - body.len()).min(chunk_size);
        body.extend_from_slice(packet.get(pos..pos + take).ok_or(AmendError::Truncated)?);
        pos += take;
    }
    let mut values = rml_amf0::deserialize(&mut &body[..]).map_err(|_| AmendError::NotACommand)?;
    match values.get_mut(2) {
        Some(Amf0Value::Object(props)) => props.extend(extra),
        _ => return Err(AmendError::NotACommand),
    }
    let body = rml_amf0::serialize(&values).map_err(|_| AmendError::NotACommand)?;
    if body.len() > 0x00ff_ffff {
        return Err(AmendError::NotACommand);
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&packet[..basic_len]);
    out.extend_from_slice(&h[0..3]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&h[6..]);
    out.extend_from_slice(&ext_ts);
    let mut continuation = packet[..basic_len].to_vec();
    continuation[0] |= 0xc0;
    continuation.extend_from_slice(&ext_ts);
    for (i, piece) in body.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.extend_from_slice(&continuation);
        }
        out.extend_from_slice(piece);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtmp::{msg_type, ChunkLimits, ChunkReader};
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    use std::collections::HashMap;

    #[test]
    fn client_caps_in_both_forms() {
        let mut v1 = HashMap::new();
        v1.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        v1.insert(
            "fourCcList".to_string(),
            Amf0Value::StrictArray(vec![
                Amf0Value::Utf8String("av01".into()),
                Amf0Value::Utf8String("hvc1".into()),
            ]),
        );
        let caps = ClientCaps::from_command_object(&Amf0Value::Object(v1));
        assert_eq!(caps.fourccs, vec!["av01", "hvc1"]);
        assert!(caps.enhanced());

        let mut map = HashMap::new();
        map.insert("hvc1".to_string(), Amf0Value::Number(7.0));
        let mut v2 = HashMap::new();
        v2.insert("videoFourCcInfoMap".to_string(), Amf0Value::Object(map));
        v2.insert("capsEx".to_string(), Amf0Value::Number(2.0));
        let caps = ClientCaps::from_command_object(&Amf0Value::Object(v2));
        assert_eq!(caps.fourccs, vec!["hvc1"]);
        assert_eq!(caps.caps_ex, Some(2));

        let legacy = ClientCaps::from_command_object(&Amf0Value::Object(HashMap::new()));
        assert!(!legacy.enhanced());
        assert!(!ClientCaps::from_command_object(&Amf0Value::Null).enhanced());
    }

    #[test]
    fn server_caps_state_both_forms() {
        let caps: HashMap<String, Amf0Value> = server_caps().into_iter().collect();
        let Some(Amf0Value::StrictArray(list)) = caps.get("fourCcList") else {
            panic!("fourCcList");
        };
        assert_eq!(list.len(), 5);
        let Some(Amf0Value::Object(video)) = caps.get("videoFourCcInfoMap") else {
            panic!("videoFourCcInfoMap");
        };
        assert_eq!(video.get("hvc1"), Some(&Amf0Value::Number(5.0)));
        assert_eq!(caps.get("capsEx"), Some(&Amf0Value::Number(6.0)));
        // Audio: v1 lists the audio FourCCs with the video ones; v2 says Opus is decoded (to
        // AAC, never forwarded as Opus) and AAC decoded and forwarded.
        for f in ["mp4a", "Opus"] {
            assert!(list.contains(&Amf0Value::Utf8String(f.into())), "{f}");
        }
        let Some(Amf0Value::Object(audio)) = caps.get("audioFourCcInfoMap") else {
            panic!("audioFourCcInfoMap");
        };
        assert_eq!(audio.get("Opus"), Some(&Amf0Value::Number(1.0)));
        assert_eq!(audio.get("mp4a"), Some(&Amf0Value::Number(5.0)));
        assert_eq!(audio.len(), 2);
    }
    /// A real `rml_rtmp` session accepts a connect; its `_result`, amended, still reads as the
    /// same message (same chunk stream, type, stream id) with the E-RTMP properties added, and
    /// the session's next command on that chunk stream still parses after it.
    #[test]
    fn amends_rml_rtmp_connect_result() {
        let config = ServerSessionConfig::new();
        let chunk_size = config.chunk_size as usize;
        let (mut session, _) = ServerSession::new(config).expect("session");
        let mut client = rml_rtmp::chunk_io::ChunkSerializer::new();
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        props.insert(
            "fourCcList".to_string(),
            Amf0Value::StrictArray(vec![Amf0Value::Utf8String("hvc1".into())]),
        );
        let connect = rml_rtmp::messages::RtmpMessage::Amf0Command {
            command_name: "connect".into(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(props),
            additional_arguments: vec![],
        };
        let payload = connect
            .into_message_payload(rml_rtmp::time::RtmpTimestamp::new(0), 0)
            .expect("payload");
        let caps = ClientCaps::from_connect_message(&payload.data).expect("a connect");
        assert_eq!(caps.fourccs, vec!["hvc1"]);
        let bytes = client.serialize(&payload, true, false).expect("chunks");
        let results = session.handle_input(&bytes.bytes).expect("input");
        let request_id = results
            .iter()
            .find_map(|r| match r {
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    ..
                }) => Some(*request_id),
                _ => None,
            })
            .expect("connect requested");
        let packets: Vec<Vec<u8>> = session
            .accept_request(request_id)
            .expect("accept")
            .into_iter()
            .filter_map(|r| match r {
                ServerSessionResult::OutboundResponse(p) => Some(p.bytes),
                _ => None,
            })
            .collect();
        assert_eq!(packets.len(), 1, "one _result packet");
        let amended = amend_connect_result(&packets[0], chunk_size, server_caps()).expect("amends");
        assert!(amended.len() > packets[0].len());

        // What the client reads: the session's preamble (chunk size, window, onBWDone on the
        // same chunk stream), the amended _result, then createStream's _result.
        let (mut fresh, preamble) = ServerSession::new(ServerSessionConfig::new()).expect("s");
        let mut wire = Vec::new();
        for r in preamble {
            if let ServerSessionResult::OutboundResponse(p) = r {
                wire.extend_from_slice(&p.bytes);
            }
        }
        let results = fresh.handle_input(&bytes.bytes).expect("input");
        let id = results
            .iter()
            .find_map(|r| match r {
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    ..
                }) => Some(*request_id),
                _ => None,
            })
            .expect("connect requested");
        for r in fresh.accept_request(id).expect("accept") {
            if let ServerSessionResult::OutboundResponse(p) = r {
                wire.extend(
                    amend_connect_result(&p.bytes, chunk_size, server_caps()).expect("amend"),
                );
            }
        }
        let create = rml_rtmp::messages::RtmpMessage::Amf0Command {
            command_name: "createStream".into(),
            transaction_id: 2.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![],
        }
        .into_message_payload(rml_rtmp::time::RtmpTimestamp::new(0), 0)
        .expect("payload");
        let create = client.serialize(&create, false, false).expect("chunks");
        for r in fresh.handle_input(&create.bytes).expect("createStream") {
            if let ServerSessionResult::OutboundResponse(p) = r {
                wire.extend_from_slice(&p.bytes);
            }
        }
        let mut reader = ChunkReader::new(ChunkLimits::default());
        let messages = reader.feed(&wire).expect("the client reads it all");
        let commands: Vec<Vec<Amf0Value>> = messages
            .iter()
            .filter(|m| m.type_id == msg_type::AMF0_COMMAND)
            .map(|m| rml_amf0::deserialize(&mut &m.payload[..]).expect("amf0"))
            .collect();
        let names: Vec<&Amf0Value> = commands.iter().map(|c| &c[0]).collect();
        assert_eq!(
            names,
            vec![
                &Amf0Value::Utf8String("onBWDone".into()),
                &Amf0Value::Utf8String("_result".into()),
                &Amf0Value::Utf8String("_result".into()),
            ]
        );
        let Amf0Value::Object(result) = &commands[1][2] else {
            panic!("command object");
        };
        assert!(
            result.contains_key("fmsVer"),
            "rml_rtmp's own properties stay"
        );
        assert_eq!(result.get("capsEx"), Some(&Amf0Value::Number(6.0)));
        assert!(
            matches!(result.get("fourCcList"), Some(Amf0Value::StrictArray(l)) if l.len() == 5)
        );
        assert_eq!(
            commands[2][1],
            Amf0Value::Number(2.0),
            "createStream's transaction"
        );
    }

    #[test]
    fn amend_refuses_what_it_cannot_rewrite() {
        assert_eq!(
            amend_connect_result(&[], 128, vec![]),
            Err(AmendError::Truncated)
        );
        assert_eq!(
            amend_connect_result(&[0x86, 0, 0, 0], 128, vec![]),
            Err(AmendError::NoLength { fmt: 2 })
        );
        // A type-0 header announcing 10 bytes that are not there.
        assert_eq!(
            amend_connect_result(&[0x06, 0, 0, 0, 0, 0, 10, 20, 0, 0, 0, 0, 2], 128, vec![]),
            Err(AmendError::Truncated)
        );
        // A body that is a string, not a command.
        let mut p = vec![0x06, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0];
        p.extend_from_slice(&[0x02, 0, 1, b'x']);
        assert_eq!(
            amend_connect_result(&p, 128, vec![]),
            Err(AmendError::NotACommand)
        );
        assert!(ClientCaps::from_connect_message(&[0x02, 0, 1, b'x']).is_none());
    }
}
