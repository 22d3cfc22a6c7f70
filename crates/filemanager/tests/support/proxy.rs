//! A TCP proxy that breaks the connection to storage on demand: refuses, stalls, or cuts a
//! request or a response after some bytes. The mode is read on every piece of data, so
//! pooled connections opened while all was well fail too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the proxy treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Close every connection as soon as it is used.
    Refuse,
    /// Accept and read, never answer.
    Stall,
    /// Forward at most this many bytes of each request, then close.
    CutRequest(usize),
    /// Forward at most this many bytes of each response, then close.
    CutResponse(usize),
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move {
                    if *m.lock().unwrap() == Mode::Refuse {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(cr, sw, m.clone(), true);
                    let down = pump(sr, cw, m, false);
                    // Either direction ending ends both: a cut is a cut.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        FaultProxy { addr, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<Mutex<Mode>>,
    request: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.lock().unwrap();
        let limit = match current {
            Mode::Pass => usize::MAX,
            Mode::Refuse => return,
            Mode::Stall => {
                // Hold the connection open and say nothing.
                std::future::pending::<()>().await;
                return;
            }
            Mode::CutRequest(max) if request => max,
            Mode::CutResponse(max) if !request => max,
            Mode::CutRequest(_) | Mode::CutResponse(_) => usize::MAX,
        };
        let allowed = limit.saturating_sub(sent).min(n);
        if allowed > 0 && to.write_all(&buf[..allowed]).await.is_err() {
            return;
        }
        sent += allowed;
        if allowed < n {
            return;
        }
    }
}
