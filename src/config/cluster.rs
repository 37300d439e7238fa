//! The `[cluster]` section: several onair nodes sharing chat, counts, live state and the
//! channel registry through Redis. Read by `cluster/`; validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{http_url, invalid, ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port[/db]`; empty: a single node, nothing shared. A secret
    /// because it may carry a password.
    pub redis_url: Secret,
    /// This node's name, unique in the cluster; empty: the host name.
    pub node_name: String,
    /// This node's HTTP base as the other nodes reach it (`http://10.0.0.2:8080`): where they
    /// fetch the HLS of a channel live here. Required with `redis_url`.
    pub advertise_url: String,
    /// Prefix of every Redis key, so that several clusters can share one Redis.
    pub key_prefix: String,
    /// Seconds a node's registry entries live without a heartbeat (one heartbeat a second).
    pub heartbeat_ttl_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: Secret::default(),
            node_name: String::new(),
            advertise_url: String::new(),
            key_prefix: "onair".into(),
            heartbeat_ttl_seconds: 5,
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// `node_name`, or the host name when it is empty.
    pub fn node(&self) -> String {
        if !self.node_name.trim().is_empty() {
            return self.node_name.trim().to_string();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "onair".into())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let url = self.redis_url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            // The value may hold a password: not echoed.
            return Err(invalid(
                "cluster.redis_url",
                "(not shown)",
                "a redis:// or rediss:// URL, or empty for a single node",
            ));
        }
        http_url("cluster.advertise_url", &self.advertise_url)?;
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "cluster.key_prefix",
                format!("{:?}", self.key_prefix),
                "a non-empty prefix without spaces",
            ));
        }
        if !(2..=600).contains(&self.heartbeat_ttl_seconds) {
            return Err(invalid(
                "cluster.heartbeat_ttl_seconds",
                self.heartbeat_ttl_seconds.to_string(),
                "2 to 600",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_url_is_a_single_node_and_a_cluster_needs_its_url() {
        let mut c = ClusterConfig::default();
        assert!(!c.enabled());
        assert!(c.validate().is_ok());
        c.redis_url = Secret::new("redis://127.0.0.1:6379");
        assert!(c.validate().is_err(), "advertise_url required");
        c.advertise_url = "http://10.0.0.2:8080".into();
        assert!(c.validate().is_ok());
        c.redis_url = Secret::new("http://x");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("cluster.redis_url") && !e.contains("http://x"));
    }
}
