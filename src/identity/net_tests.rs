//! Tests of the outbound rules: which addresses are public, which URLs a viewer may name,
//! and names whose DNS answers are private (a fixed-table lookup stands in for DNS).

use super::*;

#[test]
fn public_and_not() {
    for ok in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "172.32.0.1",
        "2606:4700:4700::1111",
        "2a01:4f8::1",
    ] {
        assert!(is_public(ok.parse().expect("ip")), "{ok}");
    }
    for bad in [
        "127.0.0.1",
        "127.1.2.3",
        "0.0.0.0",
        "10.0.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "192.0.2.1",
        "198.18.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
    ] {
        assert!(!is_public(bad.parse().expect("ip")), "{bad}");
    }
}

#[test]
fn urls_a_viewer_may_not_name() {
    let net = Net::new(false, Duration::from_secs(1)).expect("net");
    let check = |u: &str| net.check_url(Reach::Viewer, &Url::parse(u).expect("url"));
    assert!(check("https://mastodon.social/").is_ok());
    for bad in [
        "http://mastodon.social/",
        "https://127.0.0.1/",
        "https://[::1]:3000/",
        "https://localhost/",
        "https://a.localhost/",
        "https://10.1.2.3/",
        "https://[::ffff:192.168.0.1]/",
        "https://user:pw@mastodon.social/",
        "ftp://mastodon.social/",
    ] {
        assert!(matches!(check(bad), Err(NetError::Refused { .. })), "{bad}");
    }
    let open = Net::new(true, Duration::from_secs(1)).expect("net");
    assert!(open
        .check_url(
            Reach::Viewer,
            &Url::parse("http://127.0.0.1:9/").expect("url")
        )
        .is_ok());
    assert!(net
        .check_url(
            Reach::Configured,
            &Url::parse("http://127.0.0.1:9/").expect("url")
        )
        .is_ok());
}

/// A fixed DNS: names whose answers are private (as an attacker's domain can be), one with
/// a public and a private answer.
fn table(host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
    let ips: &[&str] = match host.as_str() {
        "loopback.evil.test" => &["127.0.0.1"],
        "ten.evil.test" => &["10.0.0.7"],
        "six.evil.test" => &["::1"],
        "metadata.evil.test" => &["169.254.169.254"],
        "mapped.evil.test" => &["::ffff:192.168.1.1"],
        "mixed.evil.test" => &["10.0.0.1", "1.1.1.1", "::1"],
        _ => &[],
    };
    let addrs = ips
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 0))
        .collect::<Vec<_>>();
    Box::pin(async move {
        if addrs.is_empty() {
            Err(std::io::Error::other("no such name"))
        } else {
            Ok(addrs)
        }
    })
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_by_the_resolver() {
    let resolver = Resolver {
        lookup: table,
        public_only: true,
    };
    for host in [
        "loopback.evil.test",
        "ten.evil.test",
        "six.evil.test",
        "metadata.evil.test",
        "mapped.evil.test",
    ] {
        let name: Name = host.parse().expect("name");
        let err = resolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("private"), "{host}: {err}");
    }
    // Of a mixed answer only the public address is kept (and connected to).
    let name: Name = "mixed.evil.test".parse().expect("name");
    let kept: Vec<SocketAddr> = resolver.resolve(name).await.expect("public part").collect();
    assert_eq!(kept, [SocketAddr::new("1.1.1.1".parse().expect("ip"), 0)]);
    // The system resolver: localhost is refused there too.
    let name: Name = "localhost".parse().expect("name");
    let err = Resolver {
        lookup: system_lookup,
        public_only: true,
    }
    .resolve(name)
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("private"), "{err}");
}

/// A name that passes [`Net::check_url`] (not an IP literal, not localhost) but resolves
/// to loopback: the request fails at resolution and nothing connects.
#[tokio::test]
async fn names_resolving_to_private_addresses_get_nothing() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let net = Net::with_lookup(false, Duration::from_secs(2), table).expect("net");
    for host in ["loopback.evil.test", "ten.evil.test", "six.evil.test"] {
        let url = format!("https://{host}:{port}/.well-known/oauth-authorization-server");
        assert!(net
            .check_url(Reach::Viewer, &Url::parse(&url).expect("url"))
            .is_ok());
        let err = net
            .get_json(Reach::Viewer, &url)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, NetError::Refused { .. }) && err.to_string().contains("private"),
            "{host}: {err}"
        );
    }
    assert!(l.accept().is_err(), "nothing connected");
    // With auth.allow_private_hosts the same name is reached.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let answer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = l.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    });
    let open = Net::with_lookup(true, Duration::from_secs(5), table).expect("net");
    let got = open
        .get_json(Reach::Viewer, &format!("http://loopback.evil.test:{port}/"))
        .await
        .expect("reached when allowed");
    assert_eq!(got, serde_json::json!({}));
    answer.join().expect("join");
}

#[tokio::test]
async fn refused_urls_send_nothing() {
    // A listener on loopback: it must never see a connection.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let net = Net::new(false, Duration::from_secs(2)).expect("net");
    for host in ["127.0.0.1", "localhost", "localhost."] {
        let req = net
            .client(Reach::Viewer)
            .get(format!("https://{host}:{port}/"))
            .build()
            .expect("req");
        let err = net.execute(Reach::Viewer, req).await.expect_err("refused");
        assert!(err.to_string().contains("private"), "{err}");
    }
    assert!(l.accept().is_err(), "nothing connected");
}
