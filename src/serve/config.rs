//! What the request path needs to know of the configuration, fixed when
//! the worker starts: built once from [`Config`], read by every core
//! without locks. No I/O, no Python; the only place the request path turns
//! configuration into limits and timeouts.

use std::time::Duration;

use crate::config::Config;
use crate::conns::Bounds;
use crate::http::Limits;

/// How long an idle keep-alive connection is kept open.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a lingering close may take (nginx's `lingering_time`).
const LINGER_TIME: Duration = Duration::from_secs(30);
/// The most a lingering close discards, unless `--limit-post` allows more.
const LINGER_MIN_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// From 1, as in uWSGI.
    pub worker_id: usize,
    /// Cores (request threads) in this worker.
    pub threads: usize,
    pub limits: Limits,
    /// Bounds every socket read and write (`--socket-timeout`).
    pub socket_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive: Duration,
    /// `--harakiri`; None = no limit.
    pub harakiri: Option<Duration>,
    /// Keep the request's headers on the scoreboard (`--harakiri-verbose`).
    pub keep_headers: bool,
    /// Recycle the worker after this many requests (`--max-requests` plus
    /// worker id - 1 times `--max-requests-delta`); 0 = never.
    pub max_requests: u64,
    /// A worker younger than this is not recycled for its requests
    /// (`--min-worker-lifetime`, uWSGI's default 10 s).
    pub min_worker_lifetime: Duration,
    /// Recycle the worker when the app raises (`--reload-on-exception`).
    pub reload_on_exception: bool,
    /// How long a stopping worker waits for in-flight requests.
    pub mercy: Duration,
    /// Bounds of a lingering close (time, and bytes discarded).
    pub linger_time: Duration,
    pub linger_bytes: u64,
    /// `--enable-proxy-protocol`: HTTP connections may start with a PROXY
    /// header giving the client's address.
    pub proxy_protocol: bool,
    /// `--disable-write-exception`: no OSError in the app when the client
    /// has gone.
    pub disable_write_exception: bool,
    /// `--ignore-write-errors`: no traceback for a write to a client that
    /// has gone.
    pub ignore_write_errors: bool,
    /// The most of a request body the poller waits for before the app is
    /// called (see `body_wait`).
    pub body_wait: usize,
}

impl ServeConfig {
    pub fn new(cfg: &Config, worker_id: usize) -> ServeConfig {
        let defaults = Limits::default();
        ServeConfig {
            worker_id,
            threads: cfg.threads,
            limits: Limits {
                max_head: cfg.buffer_size,
                max_uri: cfg.buffer_size.max(defaults.max_uri),
                limit_post: cfg.limit_post,
                underscores_in_headers: cfg.http_underscores_in_headers,
                ..defaults
            },
            socket_timeout: Duration::from_secs(cfg.socket_timeout.max(1)),
            keepalive: KEEPALIVE_TIMEOUT,
            harakiri: (cfg.harakiri > 0).then(|| Duration::from_secs(cfg.harakiri)),
            keep_headers: cfg.harakiri_verbose,
            max_requests: max_requests(cfg, worker_id),
            min_worker_lifetime: Duration::from_secs(cfg.lifecycle.min_worker_lifetime),
            reload_on_exception: cfg.lifecycle.reload_on_exception,
            mercy: Duration::from_secs(cfg.reload_mercy.max(1)),
            linger_time: LINGER_TIME,
            linger_bytes: cfg.limit_post.max(LINGER_MIN_BYTES),
            proxy_protocol: cfg.requests.proxy_protocol,
            disable_write_exception: cfg.requests.disable_write_exception,
            ignore_write_errors: cfg.requests.ignore_write_errors,
            body_wait: super::body_wait::bound(cfg.requests.post_buffering),
        }
    }

    /// The `--max-requests` quota of this worker, counted from `since`.
    pub fn quota(&self, since: std::time::Instant) -> crate::serve::Quota {
        crate::serve::Quota {
            max: self.max_requests,
            min_lifetime: self.min_worker_lifetime,
            since,
        }
    }

    /// What the worker's connections may take.
    pub fn conn_bounds(&self) -> Bounds {
        Bounds {
            socket_timeout: self.socket_timeout,
            keepalive: self.keepalive,
            linger_time: self.linger_time,
            linger_bytes: self.linger_bytes,
        }
    }

    /// Unix milliseconds after which a request started at `now_ms` is
    /// overdue; 0 = never (the scoreboard's encoding).
    pub fn deadline_ms(&self, now_ms: u64) -> u64 {
        self.harakiri
            .map_or(0, |h| now_ms.saturating_add(h.as_millis() as u64))
    }
}

/// uWSGI's `max_requests + (worker id - 1) * max_requests_delta`: staggered,
/// so the workers are not all recycled at once.
fn max_requests(cfg: &Config, worker_id: usize) -> u64 {
    if cfg.max_requests == 0 {
        return 0;
    }
    let delta = (worker_id as u64 - 1).saturating_mul(cfg.lifecycle.max_requests_delta);
    cfg.max_requests.saturating_add(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_from_config() {
        let mut cfg = Config::default();
        cfg.buffer_size = 32768;
        cfg.harakiri = 3;
        cfg.socket_timeout = 0;
        cfg.reload_mercy = 0;
        let s = ServeConfig::new(&cfg, 2);
        assert_eq!(s.worker_id, 2);
        assert_eq!((s.limits.max_head, s.limits.max_uri), (32768, 32768));
        assert_eq!(s.limits.max_headers, Limits::default().max_headers);
        assert_eq!(s.socket_timeout, Duration::from_secs(1), "at least 1 s");
        assert_eq!(s.mercy, Duration::from_secs(1), "at least 1 s");
        assert_eq!(s.deadline_ms(1_000), 4_000);
        assert_eq!(s.linger_bytes, LINGER_MIN_BYTES);
        let mut big_posts = Config::default();
        big_posts.limit_post = 1 << 30;
        assert_eq!(ServeConfig::new(&big_posts, 1).linger_bytes, 1 << 30);
        let small = ServeConfig::new(&Config::default(), 1);
        assert_eq!(small.limits.max_uri, Limits::default().max_uri);
        assert_eq!(small.harakiri, None);
        assert_eq!(small.deadline_ms(1_000), 0);
    }

    #[test]
    fn max_requests_are_staggered_by_the_delta() {
        let mut cfg = Config::default();
        cfg.lifecycle.max_requests_delta = 10;
        assert_eq!(
            ServeConfig::new(&cfg, 3).max_requests,
            0,
            "no quota, no delta"
        );
        cfg.max_requests = 100;
        assert_eq!(ServeConfig::new(&cfg, 1).max_requests, 100);
        assert_eq!(ServeConfig::new(&cfg, 3).max_requests, 120);
        assert_eq!(
            ServeConfig::new(&cfg, 1).min_worker_lifetime,
            Duration::from_secs(10),
            "uWSGI's default"
        );
    }
}
