//! OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as the X API wants for user-context calls
//! such as `POST /2/tweets`. Pure functions: the caller supplies the nonce and the timestamp, so
//! the signer is tested against the example published in the X developer docs ("Creating a
//! signature").
//!
//! Written by hand on purpose. The candidates were checked: `reqwest-oauth1` wraps an old
//! reqwest and is no longer maintained; `oauth1-request` works but has one maintainer, a
//! derive-macro centred API and its own credential and `rand` stack. What onair needs is the
//! signature base string and one HMAC, about fifty lines against crates it already uses
//! (`hmac`, `sha1`, `base64`, `percent-encoding`), checked below against the published vector.
//!
//! Only `twitter.rs` calls this. A JSON body is not part of the signature (only
//! `application/x-www-form-urlencoded` bodies are), so X API v2 signs the URL's query and the
//! `oauth_*` parameters alone.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;
use sha1::Sha1;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (RFC 5849 3.6).
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The four credentials of a user-context call.
#[derive(Clone, Copy)]
pub struct OAuth1Keys<'a> {
    pub consumer_key: &'a str,
    pub consumer_secret: &'a str,
    pub token: &'a str,
    pub token_secret: &'a str,
}

/// Percent-encodes as RFC 5849 section 3.6 requires.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// The base string URI (RFC 5849 3.4.1.2): scheme and host lower case, default port dropped,
/// no query or fragment.
pub fn base_string_uri(url: &Url) -> String {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

/// The signature base string: method, base URI and the normalised parameters (RFC 5849 3.4.1).
/// `params` are raw (not yet encoded) name/value pairs: the query, form body fields and the
/// `oauth_*` parameters except `oauth_signature`.
pub fn signature_base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// HMAC-SHA1 of the base string keyed with both secrets, base64 (RFC 5849 3.4.2).
pub fn sign(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization: OAuth ...` header value for a request to `url` (its query is signed)
/// with the given form-body parameters (none for a JSON body).
pub fn authorization_header(
    method: &str,
    url: &Url,
    form_params: &[(&str, &str)],
    keys: OAuth1Keys<'_>,
    nonce: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let oauth: [(&str, &str); 6] = [
        ("oauth_consumer_key", keys.consumer_key),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", &timestamp),
        ("oauth_token", keys.token),
        ("oauth_version", "1.0"),
    ];
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.extend(
        form_params
            .iter()
            .chain(oauth.iter())
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let base = signature_base_string(method, &base_string_uri(url), &params);
    let signature = sign(&base, keys.consumer_secret, keys.token_secret);
    let mut fields: Vec<String> = oauth
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", encode(v)))
        .collect();
    fields.push(format!("oauth_signature=\"{}\"", encode(&signature)));
    fields.sort();
    format!("OAuth {}", fields.join(", "))
}

/// A fresh nonce: 32 random alphanumeric characters.
pub fn nonce() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the X developer docs, "Creating a signature" (OAuth 1.0a): a POST to
    // https://api.twitter.com/1.1/statuses/update.json?include_entities=true with the form body
    // status=Hello Ladies + Gentlemen, a signed OAuth request!
    const CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
    const CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
    const TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
    const NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
    const TIMESTAMP: u64 = 1318622958;
    const STATUS: &str = "Hello Ladies + Gentlemen, a signed OAuth request!";

    fn keys() -> OAuth1Keys<'static> {
        OAuth1Keys {
            consumer_key: CONSUMER_KEY,
            consumer_secret: CONSUMER_SECRET,
            token: TOKEN,
            token_secret: TOKEN_SECRET,
        }
    }

    #[test]
    fn published_example_base_string_and_signature() {
        let params: Vec<(String, String)> = [
            ("status", STATUS),
            ("include_entities", "true"),
            ("oauth_consumer_key", CONSUMER_KEY),
            ("oauth_nonce", NONCE),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            ("oauth_token", TOKEN),
            ("oauth_version", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let base = signature_base_string(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            &params,
        );
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
        assert_eq!(
            sign(&base, CONSUMER_SECRET, TOKEN_SECRET),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
    }

    #[test]
    fn header_for_published_example_carries_the_published_signature() {
        let url =
            Url::parse("https://api.twitter.com/1.1/statuses/update.json?include_entities=true")
                .expect("url");
        let h = authorization_header(
            "POST",
            &url,
            &[("status", STATUS)],
            keys(),
            NONCE,
            TIMESTAMP,
        );
        assert!(h.starts_with("OAuth "), "{h}");
        assert!(
            h.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""),
            "{h}"
        );
        assert!(h.contains("oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\""));
        assert!(h.contains("oauth_version=\"1.0\""));
        assert!(!h.contains(CONSUMER_SECRET) && !h.contains(TOKEN_SECRET));
    }

    #[test]
    fn base_uri_normalisation() {
        let u = Url::parse("HTTPS://API.X.com:443/2/tweets?a=b#frag").expect("url");
        assert_eq!(base_string_uri(&u), "https://api.x.com/2/tweets");
        let u = Url::parse("http://127.0.0.1:8123/2/tweets").expect("url");
        assert_eq!(base_string_uri(&u), "http://127.0.0.1:8123/2/tweets");
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode("☃"), "%E2%98%83");
        assert_eq!(nonce().len(), 32);
        assert_ne!(nonce(), nonce());
    }
}
