//! Real parts the tests start as child processes on free ports: a `redis-server` and an nginx
//! load balancer (`scripts/test` installs both when missing). Each is killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::POLL;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn until_listening(child: &mut Child, port: u16, what: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {port}: {status}");
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = child.kill();
    panic!("{what} did not listen on port {port} within 10 s");
}

/// A throwaway `redis-server` without persistence.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_on(free_port()).await
    }

    /// On a given port (a restart where the gateways expect it).
    pub async fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[]).await
    }

    /// On `port` with `extra` arguments (ACL users, …).
    pub async fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        until_listening(&mut child, port, "redis-server").await;
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits (bounded) until `n` replicas listen on the session channel of `prefix`: pub/sub
    /// keeps no history, so a change published before a replica subscribed never reaches it.
    pub async fn until_subscribed(&self, prefix: &str, n: usize) {
        until_subscribed(&self.url(), prefix, n).await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`RedisServer::until_subscribed`] for a server known by its URL; returns at once when the
/// server cannot be reached (a test that starts without Redis).
pub async fn until_subscribed(url: &str, prefix: &str, n: usize) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return;
    };
    let channel = format!("{prefix}:sessions");
    let started = Instant::now();
    loop {
        let counts: Vec<(String, usize)> = match redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
        {
            Ok(c) => c,
            // Not allowed (an ACL user without it): nothing to wait on.
            Err(_) => return,
        };
        if counts.first().is_some_and(|(_, c)| *c >= n) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{n} replicas did not subscribe to {channel}: {counts:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx as a round-robin HTTP load balancer in front of `upstreams` (host:port), streaming
/// (no proxy buffering), with its own prefix directory for pid and temp files.
pub struct Nginx {
    child: Child,
    pub url: String,
    _dir: TempDir,
}

impl Nginx {
    pub async fn round_robin(upstreams: &[String]) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=0;\n"))
            .collect();
        let p = dir.0.display();
        let conf = format!(
            r#"worker_processes 1;
error_log stderr warn;
pid {p}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  upstream switchyard {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://switchyard;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 120s;
      proxy_next_upstream off;
    }}
  }}
}}
"#
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (scripts/test installs it)");
        until_listening(&mut child, port, "nginx").await;
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL would orphan the worker (holding the test's stdio open); `-s stop` sends
        // the master SIGTERM, which takes its workers down with it.
        let stopped = Command::new(nginx_binary())
            .arg("-p")
            .arg(&self._dir.0)
            .arg("-c")
            .arg(self._dir.0.join("nginx.conf"))
            .args(["-g", "daemon off;", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `nginx` from PATH, else Debian's /usr/sbin (not on a non-root PATH).
fn nginx_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("nginx");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("/usr/sbin/nginx")
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
