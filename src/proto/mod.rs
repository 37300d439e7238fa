//! Pure protocol code: no tokio, no sockets, no clocks. Bytes in, values out; each piece is
//! tested in place with scripted input.

pub mod aac;
pub mod av1;
pub mod avc;
pub mod ertmp;
pub mod flv;
pub mod fmp4;
pub mod hevc;
pub mod media;
pub mod nal;
pub mod opus;
pub mod playlist;
pub mod rtmp;
pub mod rtpclock;
pub mod sdp;
pub mod streamid;
pub mod stun;
pub mod timestamps;
pub mod ts;
pub mod ts_demux;
