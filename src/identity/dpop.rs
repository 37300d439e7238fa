//! DPoP (RFC 9449) proofs, as atproto OAuth requires: an ES256 key per session, and for each
//! request a JWT `{typ: dpop+jwt, alg: ES256, jwk}` . `{jti, htm, htu, iat, nonce?, ath?}`
//! signed with it. Servers hand out nonces (`DPoP-Nonce`) and refuse a proof without the
//! current one (`use_dpop_nonce`); [`is_nonce_error`] spots that answer so the caller retries
//! once with the new nonce. Hand-written: a JWT of fixed shape is a few lines over `p256`,
//! where a JOSE crate would bring far more than these two headers need.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

use super::net::NetError;

/// A session's DPoP key.
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpopKey(<redacted>)")
    }
}

impl DpopKey {
    pub fn generate() -> Self {
        // p256 wants a rand_core 0.6 RNG; 32 bytes from ours make a scalar just as well
        // (retried in the astronomically unlikely case they are not a valid one).
        loop {
            let mut b = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
            if let Ok(key) = SigningKey::from_bytes(&b.into()) {
                return Self { key };
            }
        }
    }

    /// The secret scalar, base64url: what is sealed with the session's grant.
    pub fn to_secret(&self) -> String {
        B64.encode(self.key.to_bytes())
    }

    pub fn from_secret(s: &str) -> Option<Self> {
        let b = B64.decode(s).ok()?;
        let arr: [u8; 32] = b.try_into().ok()?;
        SigningKey::from_bytes(&arr.into())
            .ok()
            .map(|key| Self { key })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": point.x().map(|x| B64.encode(x)).unwrap_or_default(),
            "y": point.y().map(|y| B64.encode(y)).unwrap_or_default(),
        })
    }

    /// A proof for one request. `htu` is the URL without query and fragment; `access_token`
    /// (for resource requests) adds its hash as `ath`.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let htu = htu.split(['?', '#']).next().unwrap_or(htu);
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = serde_json::json!({
            "jti": super::crypto::random_token(16),
            "htm": htm,
            "htu": htu,
            "iat": chrono::Utc::now().timestamp(),
        });
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        if let Some(t) = access_token {
            claims["ath"] = B64.encode(Sha256::digest(t.as_bytes())).into();
        }
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }
}

/// Whether an answer asks for a (new) DPoP nonce: 400 `use_dpop_nonce` from an authorization
/// server, or 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` from a resource server.
/// Returns the nonce to retry with.
pub fn is_nonce_error(e: &NetError) -> Option<String> {
    let NetError::Status {
        status,
        detail,
        headers,
        ..
    } = e
    else {
        return None;
    };
    let nonce = headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())?
        .to_string();
    let www = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let asks = (status.as_u16() == 400 && detail.contains("use_dpop_nonce"))
        || (status.as_u16() == 401 && www.contains("use_dpop_nonce"));
    asks.then_some(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn proof_verifies_with_its_jwk() {
        let k = DpopKey::generate();
        let p = k.proof(
            "POST",
            "https://pds.example/xrpc/x?q=1",
            Some("n1"),
            Some("tok"),
        );
        let parts: Vec<&str> = p.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).expect("b64")).expect("json");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(claims["htu"], "https://pds.example/xrpc/x");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(
            claims["ath"],
            B64.encode(Sha256::digest(b"tok")).as_str(),
            "ath"
        );
        let x = B64
            .decode(header["jwk"]["x"].as_str().expect("x"))
            .expect("x");
        let y = B64
            .decode(header["jwk"]["y"].as_str().expect("y"))
            .expect("y");
        let mut sec1 = vec![4u8];
        sec1.extend(x);
        sec1.extend(y);
        let vk = VerifyingKey::from_sec1_bytes(&sec1).expect("key");
        let sig = Signature::from_slice(&B64.decode(parts[2]).expect("sig")).expect("sig");
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies");
        let back = DpopKey::from_secret(&k.to_secret()).expect("round trip");
        assert_eq!(back.jwk(), k.jwk());
        assert!(!format!("{k:?}").contains(&k.to_secret()));
    }
}
