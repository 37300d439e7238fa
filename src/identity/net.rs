//! Outbound HTTP for sign-in and cross-posting. Two clients, both without redirects (a
//! redirect could carry a code or a token elsewhere, or point at an internal address), with
//! timeouts and a cap on every answer's size:
//!
//! - [`Reach::Viewer`] for hosts a viewer names (a Mastodon server, a PDS from a DID document):
//!   its DNS resolver drops private, loopback, link-local and other non-public addresses
//!   unless `auth.allow_private_hosts`, and the connection goes to exactly the addresses the
//!   resolver checked (reqwest connects to what the resolver returns), so there is no gap for
//!   DNS rebinding between the check and the connect. IP literals skip resolvers, so
//!   [`Net::check_url`] checks them before anything is sent.
//! - [`Reach::Configured`] for endpoints the admin configured (`auth.x.api_base`,
//!   `auth.bluesky.service`, ...): trusted hosts, same limits otherwise.
//!
//! `oauth2` requests go through [`Net::oauth_client`], so they get the same checks.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use url::Url;

/// Largest answer read from a provider (JSON documents and API answers are a few KiB).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Who chose the host a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A viewer (or a document a viewer controls): only public addresses, https only.
    Viewer,
    /// The admin's configuration.
    Configured,
}

/// Why a request did not get an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{host} is not allowed: {reason}")]
    Refused { host: String, reason: &'static str },
    #[error("{host}: no answer: {detail}")]
    Network { host: String, detail: String },
    #[error("{host}: answer larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{host}: HTTP {status}: {detail}")]
    Status {
        host: String,
        status: StatusCode,
        detail: String,
        /// Answer headers (DPoP nonces, Retry-After).
        headers: Box<HeaderMap>,
    },
    #[error("{host}: unexpected answer: {detail}")]
    Unexpected { host: String, detail: String },
}

impl NetError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            NetError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer, read whole (up to [`MAX_ANSWER_BYTES`]).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The host it came from, for error messages.
    pub host: String,
}

impl Answer {
    /// The body as JSON, for a 2xx answer; any other status becomes [`NetError::Status`].
    pub fn json(self) -> Result<serde_json::Value, NetError> {
        let ok = self.ok()?;
        serde_json::from_slice(&ok.body).map_err(|e| NetError::Unexpected {
            host: ok.host.clone(),
            detail: format!("not JSON: {e}"),
        })
    }

    /// Passes a 2xx answer through.
    pub fn ok(self) -> Result<Answer, NetError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(NetError::Status {
                detail: crate::announce::queue::snippet(&String::from_utf8_lossy(&self.body)),
                host: self.host,
                status: self.status,
                headers: Box::new(self.headers),
            })
        }
    }
}

/// Whether an address is on the public internet. Everything else (loopback, private ranges,
/// link-local, CGNAT, documentation, multicast, reserved, IPv4 inside IPv6) is refused for
/// viewer-named hosts.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96): the
    // address that is really reached is the IPv4 one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        return false; // ::, ::1 and the deprecated IPv4-compatible form
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // 6to4 (2002::/16) embeds an IPv4 address too.
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3])) // discard-only
}

/// A name lookup: the system's resolver in the server, a fixed table in tests (so that "a
/// name whose DNS answer is private" can be tested without a DNS server).
type Lookup = fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

fn system_lookup(
    host: String,
) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
    Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
}

/// The resolver's refusal: every address of the name is private (told apart from network
/// errors by [`network`], which makes it a [`NetError::Refused`]).
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to private, loopback or reserved addresses")]
struct PrivateAnswer(String);

/// Resolves names and, with `public_only`, keeps only public addresses; none left is an
/// error, so the request fails before any connection is made.
struct Resolver {
    lookup: Lookup,
    public_only: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let Resolver {
            lookup,
            public_only,
        } = *self;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = lookup(host.clone()).await?;
            let public: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| !public_only || is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(PrivateAnswer(host)) as Box<_>);
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The two outbound clients and their rules.
#[derive(Clone)]
pub struct Net {
    viewer: reqwest::Client,
    configured: reqwest::Client,
    allow_private: bool,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

impl Net {
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Net, reqwest::Error> {
        Net::with_lookup(allow_private, timeout, system_lookup)
    }

    fn with_lookup(
        allow_private: bool,
        timeout: Duration,
        lookup: Lookup,
    ) -> Result<Net, reqwest::Error> {
        let base = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(concat!("onair/", env!("CARGO_PKG_VERSION")))
        };
        let viewer = base()
            .dns_resolver(Arc::new(Resolver {
                lookup,
                public_only: !allow_private,
            }))
            .build()?;
        Ok(Net {
            viewer,
            configured: base().build()?,
            allow_private,
        })
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Refuses a URL a viewer's request must not go to: not https (http only with
    /// `auth.allow_private_hosts`), credentials in it, or an IP literal that is not public.
    /// Names are checked again by the resolver when the request is made.
    pub fn check_url(&self, reach: Reach, url: &Url) -> Result<(), NetError> {
        let host = url.host_str().unwrap_or_default().to_string();
        let refuse = |reason| {
            Err(NetError::Refused {
                host: host.clone(),
                reason,
            })
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private || reach == Reach::Configured => {}
            _ => return refuse("only https:// servers can be used"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("URLs with credentials are not used");
        }
        if reach == Reach::Viewer && !self.allow_private {
            match url.host() {
                Some(url::Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => {
                    return refuse("a private, loopback or reserved address")
                }
                Some(url::Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => {
                    return refuse("a private, loopback or reserved address")
                }
                Some(url::Host::Domain(d)) if is_localhost(d) => {
                    return refuse("a private, loopback or reserved address")
                }
                None => return refuse("no host"),
                _ => {}
            }
        }
        Ok(())
    }

    /// The client for `reach`, to build a request with; send it with [`Net::execute`].
    pub fn client(&self, reach: Reach) -> &reqwest::Client {
        match reach {
            Reach::Viewer => &self.viewer,
            Reach::Configured => &self.configured,
        }
    }

    /// Checks the URL, sends, and reads the whole answer up to [`MAX_ANSWER_BYTES`].
    pub async fn execute(&self, reach: Reach, req: reqwest::Request) -> Result<Answer, NetError> {
        self.check_url(reach, req.url())?;
        let host = req.url().host_str().unwrap_or_default().to_string();
        let mut resp = self
            .client(reach)
            .execute(req)
            .await
            .map_err(|e| network(&host, e))?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_ANSWER_BYTES as u64)
        {
            return Err(NetError::TooLarge {
                host,
                limit: MAX_ANSWER_BYTES,
            });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| network(&host, e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(NetError::TooLarge {
                    host,
                    limit: MAX_ANSWER_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: body.freeze(),
            host,
        })
    }

    /// GET a JSON document.
    pub async fn get_json(&self, reach: Reach, url: &str) -> Result<serde_json::Value, NetError> {
        let req = self
            .client(reach)
            .get(url)
            .header("Accept", "application/json")
            .build()
            .map_err(|e| network(url, e))?;
        self.execute(reach, req).await?.json()
    }

    /// An `oauth2` HTTP client going through [`Net::execute`].
    pub fn oauth_client(
        &self,
        reach: Reach,
    ) -> impl Fn(
        oauth2::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, NetError>> + Send>,
    > + '_ {
        move |req: oauth2::HttpRequest| {
            let net = self.clone();
            Box::pin(async move {
                let uri = req.uri().to_string();
                let req = reqwest::Request::try_from(req).map_err(|e| network(&uri, e))?;
                let a = net.execute(reach, req).await?;
                let mut out = oauth2::http::Response::builder().status(a.status);
                for (k, v) in a.headers.iter() {
                    out = out.header(k, v);
                }
                out.body(a.body.to_vec()).map_err(|e| NetError::Unexpected {
                    host: a.host,
                    detail: e.to_string(),
                })
            })
        }
    }
}

/// `localhost` and its subdomains (RFC 6761), with or without the final dot.
fn is_localhost(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    n == "localhost" || n.ends_with(".localhost")
}

/// A request error as text, without the URL (whose query could carry a code).
fn network(host: &str, e: reqwest::Error) -> NetError {
    let host = Url::parse(host)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_else(|| host.to_string());
    let e = e.without_url();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if s.downcast_ref::<PrivateAnswer>().is_some() {
            return NetError::Refused {
                host,
                reason: "its name resolves only to private, loopback or reserved addresses",
            };
        }
        source = s.source();
    }
    let mut detail = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(&format!(": {s}"));
        source = s.source();
    }
    NetError::Network { host, detail }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
