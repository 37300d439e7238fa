//! Debian's nginx started on a free port with the shipped `deploy/nginx-edge.conf`, templated
//! only for its listen port, its upstream and its cache directory, inside a minimal main
//! context (pid, logs and temp paths in a temp dir) as Debian's nginx.conf would include it.
//! The access log records, per request, the URI, status, cache status and upstream address,
//! so that tests count the requests that reached onair per object.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, temp_dir, wait_for};

/// The shipped edge config.
pub fn shipped_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx-edge.conf");
    std::fs::read_to_string(path).expect("deploy/nginx-edge.conf")
}

/// Replaces `from` (which must occur exactly once) with `to`.
fn template(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx-edge.conf should contain {from:?} once"
    );
    text.replacen(from, to, 1)
}

pub struct Edge {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

/// One answer: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A GET with its headers; connection errors panic.
pub fn fetch(url: &str) -> Answer {
    let answer = |r: ureq::Response| {
        let status = r.status();
        let headers = r
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                r.header(&n)
                    .map(|v| (n.to_ascii_lowercase(), v.to_string()))
            })
            .collect();
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).expect("body");
        Answer {
            status,
            headers,
            body,
        }
    };
    match ureq::get(url).timeout(Duration::from_secs(20)).call() {
        Ok(r) => answer(r),
        Err(ureq::Error::Status(_, r)) => answer(r),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// Whether Debian's nginx is installed (scripts/packages-test.txt).
pub fn nginx_installed() -> bool {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Edge {
    /// Starts nginx with the shipped config in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Edge {
        let dir = temp_dir("edge");
        let port = free_port();
        let mut conf = shipped_config();
        conf = template(&conf, "listen 8081;", &format!("listen 127.0.0.1:{port};"));
        conf = template(
            &conf,
            "server 127.0.0.1:8080;",
            &format!("server {upstream};"),
        );
        conf = template(
            &conf,
            "/var/cache/nginx/onair",
            &dir.join("cache").display().to_string(),
        );
        std::fs::write(dir.join("edge.conf"), conf).expect("write edge.conf");
        let d = dir.display();
        let main = format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 4096; }}\n\
http {{\n\
  log_format edge '$request_uri $status $upstream_cache_status $upstream_addr';\n\
  access_log {d}/access.log edge;\n\
  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  include {d}/edge.conf;\n}}\n"
        );
        let main_path = dir.join("nginx.conf");
        std::fs::write(&main_path, main).expect("write nginx.conf");
        let check = Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&main_path)
            .output()
            .expect("nginx -t");
        assert!(
            check.status.success(),
            "nginx -t refused the shipped edge config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&main_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr = format!("127.0.0.1:{port}");
        let edge = Edge { child, addr, dir };
        wait_for(Duration::from_secs(10), "nginx to listen", || {
            std::net::TcpStream::connect(&edge.addr).ok()
        });
        edge
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Answer {
        fetch(&self.url(path))
    }

    /// Access-log lines so far: (request URI, status, cache status, upstream address).
    pub fn log(&self) -> Vec<(String, u16, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut w = l.split(' ');
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok()?,
                    w.next()?.to_string(),
                    w.next()?.to_string(),
                ))
            })
            .collect()
    }

    /// How many requests for exactly `uri` went to onair (an upstream address was logged).
    pub fn upstream_requests(&self, uri: &str) -> usize {
        self.log()
            .iter()
            .filter(|(u, _, _, up)| u == uri && up != "-")
            .count()
    }

    /// How many requests for exactly `uri` the edge answered.
    pub fn requests(&self, uri: &str) -> usize {
        self.log().iter().filter(|(u, ..)| u == uri).count()
    }

    /// Waits until the access log has `n` lines for `uri` (nginx logs a request just after
    /// its answer leaves).
    pub fn wait_logged(&self, uri: &str, n: usize) {
        wait_for(
            Duration::from_secs(5),
            &format!("{n} log lines for {uri}"),
            || (self.requests(uri) >= n).then_some(()),
        );
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        // SAFETY: kill(2) on the pid of the child this harness started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
