//! Health endpoints for container orchestrators (`--health-addr`): `GET /healthz` answers 200 while the
//! process runs (liveness); `GET /readyz` answers 200 while the worker is registered and its last
//! heartbeat succeeded recently, 503 with the reason otherwise (readiness). Plain HTTP/1.1, one
//! request per connection, no TLS: bind it to an address only the orchestrator reaches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
struct State {
    worker_id: Option<String>,
    last_beat: Option<Instant>,
    problem: String,
}

/// What the worker last reported about itself; shared with the HTTP task.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
    /// Longer than this without a successful heartbeat: not ready.
    max_silence: Duration,
}

impl Health {
    pub fn new(heartbeat_every: Duration) -> Arc<Health> {
        Arc::new(Health {
            state: Mutex::new(State {
                worker_id: None,
                last_beat: None,
                problem: "starting".into(),
            }),
            max_silence: heartbeat_every * 2 + Duration::from_secs(1),
        })
    }

    pub fn registered(&self, worker_id: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.worker_id = Some(worker_id.to_string());
        s.last_beat = Some(Instant::now());
    }

    pub fn beat(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_beat = Some(Instant::now());
    }

    /// Not registered any more (connection lost, marked gone, stopping), and why.
    pub fn unregistered(&self, why: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.worker_id = None;
        s.last_beat = None;
        s.problem = why.to_string();
    }

    /// Ok(body) when ready, Err(reason) when not.
    pub fn readiness(&self, now: Instant) -> Result<String, String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (&s.worker_id, s.last_beat) {
            (Some(id), Some(beat)) if now.duration_since(beat) <= self.max_silence => {
                Ok(format!("ready: worker {id}\n"))
            }
            (Some(id), Some(beat)) => Err(format!(
                "not ready: worker {id} has had no successful heartbeat for {:.0} s\n",
                now.duration_since(beat).as_secs_f64()
            )),
            _ => Err(format!("not ready: {}\n", s.problem)),
        }
    }
}

/// Binds now (so a bad address is reported at start) and serves in a task of its own.
pub async fn listen(addr: &str, health: Arc<Health>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for --health-addr: {e}"))?;
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                let health = health.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), answer(stream, &health)).await;
                });
            }
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buf = vec![0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let response = respond(request.lines().next().unwrap_or(""), health, Instant::now());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The full HTTP response to a request line.
pub fn respond(request_line: &str, health: &Health, now: Instant) -> String {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/healthz") => ("200 OK", "ok\n".to_string()),
        ("GET", "/readyz") => match health.readiness(now) {
            Ok(body) => ("200 OK", body),
            Err(body) => ("503 Service Unavailable", body),
        },
        ("GET", _) => (
            "404 Not Found",
            "not found: try /healthz or /readyz\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_registered_and_heartbeating() {
        let h = Health::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(respond("GET /readyz HTTP/1.1", &h, t0).starts_with("HTTP/1.1 503 "));
        assert!(respond("GET /readyz HTTP/1.1", &h, t0).ends_with("not ready: starting\n"));
        h.registered("w1");
        assert!(respond("GET /readyz HTTP/1.1", &h, Instant::now()).starts_with("HTTP/1.1 200 OK"));
        let late = Instant::now() + Duration::from_secs(12);
        assert!(
            h.readiness(late)
                .unwrap_err()
                .contains("no successful heartbeat for 1"),
            "{:?}",
            h.readiness(late)
        );
        h.unregistered("connection lost");
        assert_eq!(
            h.readiness(Instant::now()).unwrap_err(),
            "not ready: connection lost\n"
        );
    }

    #[test]
    fn liveness_and_unknown_requests() {
        let h = Health::new(Duration::from_secs(5));
        let ok = respond("GET /healthz HTTP/1.1", &h, Instant::now());
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\n")
                && ok.contains("Content-Length: 3\r\n")
                && ok.ends_with("\r\n\r\nok\n"),
            "{ok}"
        );
        assert!(respond("GET /x HTTP/1.1", &h, Instant::now()).starts_with("HTTP/1.1 404 "));
        assert!(respond("POST /readyz HTTP/1.1", &h, Instant::now()).starts_with("HTTP/1.1 405 "));
    }
}
