//! Picture uploads as the real APIs take them: Mastodon's `POST /api/v2/media` (multipart
//! `file` + `description`, scope `write:media`, 200 when processed at once or 202 and then
//! `GET /api/v1/media/{id}` answering 206 until it is, statuses refusing media that is not
//! processed or not the account's) and Bluesky's `com.atproto.repo.uploadBlob` (raw bytes with
//! their `Content-Type`, a blob whose `ref` a post's `app.bsky.embed.external` thumb must name,
//! image/* of at most 1,000,000 bytes). The multipart parser is written here independently of
//! the server's builder, so a bug in one cannot cancel itself out.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{status_form, Received, Reply};

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Parses a `multipart/form-data` body as RFC 7578 describes it; `None` if it is not one.
pub fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let (kind, params) = content_type.split_once(';')?;
    if kind.trim() != "multipart/form-data" {
        return None;
    }
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(delim.len())
            .position(|w| w == delim.as_slice())
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, 0)?;
    loop {
        let after = at + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Some(parts);
        }
        if body.get(after..after + 2) != Some(b"\r\n") {
            return None;
        }
        let start = after + 2;
        let next = find(body, start)?;
        // The part ends with CRLF before the next delimiter.
        let part = body.get(start..next.checked_sub(2)?)?;
        if body.get(next - 2..next) != Some(b"\r\n") {
            return None;
        }
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&part[..split]).ok()?;
        let data = part[split + 4..].to_vec();
        let mut p = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data,
        };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    let mut fields = v.split(';').map(str::trim);
                    if fields.next() != Some("form-data") {
                        return None;
                    }
                    for f in fields {
                        let (fk, fv) = f.split_once('=')?;
                        let fv = fv.trim_matches('"').to_string();
                        match fk {
                            "name" => p.name = fv,
                            "filename" => p.filename = Some(fv),
                            _ => {}
                        }
                    }
                }
                "content-type" => p.content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        if p.name.is_empty() {
            return None;
        }
        parts.push(p);
        at = next;
    }
}

/// A media attachment as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct Media {
    pub id: String,
    pub description: String,
    pub bytes: Vec<u8>,
    /// Polls of `GET /api/v1/media/{id}` still answered 206.
    pub processing: u32,
}

/// How the Mastodon posting stand-in behaves.
#[derive(Debug, Clone)]
pub struct MastodonApi {
    pub token: &'static str,
    /// Scopes of the token (`write:statuses`, `write:media`, or `write` for both).
    pub scopes: Vec<&'static str>,
    /// Uploads are answered 202 and stay processing for this many polls.
    pub processing_polls: u32,
}

impl MastodonApi {
    pub fn new(token: &'static str) -> Self {
        Self {
            token,
            scopes: vec!["write:statuses", "write:media"],
            processing_polls: 0,
        }
    }
}

fn outside_scopes() -> Reply {
    Reply::new(
        403,
        r#"{"error":"This action is outside the authorized scopes"}"#,
    )
}

/// Mastodon's posting API with media: `POST /api/v2/media`, `GET /api/v1/media/{id}`,
/// `POST /api/v1/statuses` (with `media_ids[]`).
pub fn mastodon_api(api: MastodonApi) -> impl FnMut(&Received) -> Reply + Send {
    let mut media: HashMap<String, Media> = HashMap::new();
    let mut next_id = 109_000_000u64;
    move |r: &Received| {
        if r.header("authorization") != Some(&format!("Bearer {}", api.token)) {
            return Reply::new(401, r#"{"error":"The access token is invalid"}"#);
        }
        let has = |s: &str| api.scopes.contains(&s) || api.scopes.contains(&"write");
        let path = r.path.split('?').next().unwrap_or_default();
        match (r.method.as_str(), path) {
            ("POST", "/api/v2/media") => {
                if !has("write:media") {
                    return outside_scopes();
                }
                let Some(parts) = r
                    .header("content-type")
                    .and_then(|ct| multipart(ct, &r.body))
                else {
                    return Reply::new(
                        422,
                        r#"{"error":"Validation failed: File can't be blank"}"#,
                    );
                };
                let file = parts.iter().find(|p| p.name == "file");
                let Some(file) = file.filter(|f| f.filename.is_some()) else {
                    return Reply::new(
                        422,
                        r#"{"error":"Validation failed: File can't be blank"}"#,
                    );
                };
                // Mastodon checks the type by the content as well as the declared one.
                let jpeg = file.data.starts_with(&[0xff, 0xd8, 0xff]);
                if !jpeg || file.content_type.as_deref() != Some("image/jpeg") {
                    return Reply::new(
                        422,
                        r#"{"error":"Validation failed: File content type is invalid"}"#,
                    );
                }
                if file.data.len() > 16 * 1024 * 1024 {
                    return Reply::new(422, r#"{"error":"Validation failed: File is too big"}"#);
                }
                let description = parts
                    .iter()
                    .find(|p| p.name == "description")
                    .map(|p| String::from_utf8_lossy(&p.data).into_owned())
                    .unwrap_or_default();
                if description.chars().count() > 1500 {
                    return Reply::new(
                        422,
                        r#"{"error":"Validation failed: Description is too long (maximum is 1500 characters)"}"#,
                    );
                }
                next_id += 1;
                let id = next_id.to_string();
                let m = Media {
                    id: id.clone(),
                    description: description.clone(),
                    bytes: file.data.clone(),
                    processing: api.processing_polls,
                };
                media.insert(id.clone(), m);
                let processing = api.processing_polls > 0;
                let url = (!processing).then(|| format!("https://files.example/{id}.jpg"));
                Reply::new(
                    if processing { 202 } else { 200 },
                    serde_json::json!({"id": id, "type": "image", "url": url,
                        "preview_url": format!("https://files.example/{id}-small.jpg"),
                        "description": description})
                    .to_string(),
                )
            }
            ("GET", p) if p.starts_with("/api/v1/media/") => {
                let id = &p["/api/v1/media/".len()..];
                let Some(m) = media.get_mut(id) else {
                    return Reply::new(404, r#"{"error":"Record not found"}"#);
                };
                if m.processing > 0 {
                    m.processing -= 1;
                    return Reply::new(
                        206,
                        serde_json::json!({"id": id, "type": "image", "url": null}).to_string(),
                    );
                }
                Reply::new(
                    200,
                    serde_json::json!({"id": id, "type": "image",
                        "url": format!("https://files.example/{id}.jpg")})
                    .to_string(),
                )
            }
            ("POST", "/api/v1/statuses") => {
                if !has("write:statuses") {
                    return outside_scopes();
                }
                let (status, vis) = match status_form(r) {
                    Ok(x) => x,
                    Err(e) => return e,
                };
                if r.header("idempotency-key").is_none_or(str::is_empty) {
                    return Reply::new(
                        422,
                        r#"{"error":"test stand-in wants an Idempotency-Key"}"#,
                    );
                }
                let ids = form_all(r, "media_ids[]");
                if ids.len() > 4 {
                    return Reply::new(
                        422,
                        r#"{"error":"Validation failed: You can only attach up to 4 media"}"#,
                    );
                }
                let mut attached = Vec::new();
                for id in &ids {
                    match media.get(id) {
                        None => return Reply::new(422, r#"{"error":"Record not found"}"#),
                        Some(m) if m.processing > 0 => {
                            return Reply::new(
                                422,
                                r#"{"error":"Cannot attach files that have not finished processing. Try again in a moment!"}"#,
                            )
                        }
                        Some(m) => attached.push(serde_json::json!({
                            "id": m.id, "type": "image", "description": m.description,
                        })),
                    }
                }
                Reply::new(
                    200,
                    serde_json::json!({"id": "103704874086360371", "content": status,
                        "visibility": vis, "media_attachments": attached})
                    .to_string(),
                )
            }
            _ => Reply::new(404, r#"{"error":"Record not found"}"#),
        }
    }
}

/// Every value of a repeated form field (`media_ids[]`), in order.
pub fn form_all(r: &Received, key: &str) -> Vec<String> {
    String::from_utf8_lossy(&r.body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (super::form_decode(k), super::form_decode(v)))
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The blob reference a PDS gives `data` (a CID in spirit: derived from the content).
pub fn blob_ref(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    format!(
        "bafkrei{}",
        d[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// `com.atproto.repo.uploadBlob`: raw bytes with their `Content-Type`; the blob object, kept in
/// `blobs` (ref → (mime type, size)).
pub fn upload_blob(r: &Received, blobs: &mut HashMap<String, (String, usize)>) -> Reply {
    let mime = r.header("content-type").unwrap_or_default().to_string();
    if r.body.is_empty() || mime.is_empty() || mime.starts_with("application/json") {
        return Reply::new(
            400,
            r#"{"error":"InvalidRequest","message":"request has no blob"}"#,
        );
    }
    let link = blob_ref(&r.body);
    blobs.insert(link.clone(), (mime.clone(), r.body.len()));
    Reply::new(
        200,
        serde_json::json!({"blob": {"$type": "blob", "ref": {"$link": link},
            "mimeType": mime, "size": r.body.len()}})
        .to_string(),
    )
}

/// Whether an `app.bsky.embed.external` thumb (if any) is a blob this PDS holds, an image of at
/// most 1,000,000 bytes, described as uploaded.
pub fn thumb_ok(external: &serde_json::Value, blobs: &HashMap<String, (String, usize)>) -> bool {
    let t = &external["thumb"];
    if t.is_null() {
        return true;
    }
    let Some(link) = t["ref"]["$link"].as_str() else {
        return false;
    };
    let Some((mime, size)) = blobs.get(link) else {
        return false;
    };
    t["$type"] == "blob"
        && t["mimeType"].as_str() == Some(mime.as_str())
        && t["size"].as_u64() == Some(*size as u64)
        && mime.starts_with("image/")
        && *size <= 1_000_000
}
