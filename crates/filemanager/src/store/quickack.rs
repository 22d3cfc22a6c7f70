//! The HTTP client for S3 endpoints reached over plain `http://` (Garage or MinIO on loopback
//! or a LAN): hyper's pooled HTTP/1 client on sockets that acknowledge every answer at once.
//!
//! Why it exists: Garage writes the head of a response and its body in two `write`s, on a
//! socket with Nagle's algorithm on. On a connection that is kept alive between requests,
//! Linux's receiving side is in its "interactive" mode and delays its ACK of that head by up
//! to 40 ms, and Nagle holds the body back until the ACK comes. Through object_store's default
//! client every GET of a small object took about 44 ms instead of about 1 ms (listings and
//! multipart answers, which Garage writes in one piece, never waited). Setting `TCP_QUICKACK`
//! after each write leaves that mode, so the head is acknowledged as soon as it is read and the
//! body follows at once. The option is per socket and does not stick (the next request sent re-enters the
//! mode), hence once per write: one `setsockopt` call per request, a few for large bodies.
//!
//! `https://` endpoints keep object_store's reqwest client: there a TLS terminator sits in
//! front of the server and owns the socket. So do endpoints reached through an HTTP proxy
//! (`HTTP_PROXY` and friends are honoured by reqwest only) and every platform but Linux.
//!
//! What reqwest did and this client keeps: `TCP_NODELAY`, the connect timeout, one deadline for
//! the whole request including its body, a pool of idle connections (90 s), and error kinds
//! that object_store's retry logic understands.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use tokio::net::TcpStream;

/// How long an idle pooled connection is kept (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Environment variables through which reqwest would route requests via a proxy.
const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// Whether requests to `endpoint` go through this client rather than reqwest: a plain
/// `http://` endpoint, no proxy configured in the environment (`env` looks variables up).
pub(crate) fn applies(endpoint: Option<&str>, env: impl Fn(&str) -> Option<String>) -> bool {
    endpoint.is_some_and(|e| e.starts_with("http://"))
        && PROXY_VARS
            .iter()
            .all(|v| env(v).is_none_or(|value| value.is_empty()))
}

/// The connector handed to object_store's builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuickAckConnector {
    /// Bound on establishing a TCP connection.
    pub(crate) connect_timeout: Duration,
    /// Bound on a whole request, body included.
    pub(crate) request_timeout: Duration,
}

impl HttpConnector for QuickAckConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut tcp = TcpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(Connect(tcp));
        Ok(HttpClient::new(QuickAckService {
            client,
            timeout: self.request_timeout,
        }))
    }
}

/// Makes TCP connections and wraps them in [`QuickAckStream`].
#[derive(Clone)]
struct Connect(TcpConnector);

impl tower_service::Service<http::Uri> for Connect {
    type Response = QuickAckStream;
    type Error = Box<dyn StdError + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { Ok(QuickAckStream(connecting.await?)) })
    }
}

/// A TCP stream that re-arms `TCP_QUICKACK` after every write (see the module docs).
struct QuickAckStream(TokioIo<TcpStream>);

impl QuickAckStream {
    fn after_write(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            // Best effort: if the option cannot be set, the only loss is the delay it avoids.
            let _ = socket2::SockRef::from(self.0.inner()).set_tcp_quickack(true);
        }
    }
}

impl Read for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write(cx, buf);
        self.after_write(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        self.after_write(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for QuickAckStream {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

/// object_store's view of the client: one request in, one response out.
#[derive(Clone)]
struct QuickAckService {
    client: Client<Connect, HttpRequestBody>,
    timeout: Duration,
}

impl std::fmt::Debug for QuickAckService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickAckService")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpService for QuickAckService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = tokio::time::timeout_at(deadline, self.client.request(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| {
                if e.is_connect() {
                    HttpError::new(HttpErrorKind::Connect, e)
                } else {
                    classified(e)
                }
            })?;
        let (parts, body) = response.into_parts();
        let body = DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

fn timed_out() -> HttpError {
    HttpError::new(
        HttpErrorKind::Timeout,
        io::Error::new(io::ErrorKind::TimedOut, "request deadline passed"),
    )
}

/// `e` as an [`HttpError`] of the kind [`kind_of`] finds.
fn classified<E: StdError + Send + Sync + 'static>(e: E) -> HttpError {
    let kind = kind_of(&e);
    HttpError::new(kind, e)
}

/// Sorts a failure into the kinds object_store retries on (connect, request, timeout,
/// interrupted) or does not (unknown), by the first hyper or I/O error in its chain.
fn kind_of(e: &(dyn StdError + 'static)) -> HttpErrorKind {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return HttpErrorKind::Timeout;
            }
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() {
                return HttpErrorKind::Request;
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return HttpErrorKind::Timeout,
                io::ErrorKind::ConnectionRefused => return HttpErrorKind::Connect,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return HttpErrorKind::Interrupted,
                _ => {}
            }
        }
        current = err.source();
    }
    HttpErrorKind::Unknown
}

/// A response body that fails with a timeout once the request's deadline has passed while
/// it waits for more bytes (reqwest's `timeout` covers the body the same way).
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(classified))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(timed_out()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn only_plain_http_endpoints_without_a_proxy() {
        assert!(applies(Some("http://127.0.0.1:3900"), env(&[])));
        assert!(applies(
            Some("http://garage.lan:3900"),
            env(&[("HTTP_PROXY", "")])
        ));
        assert!(!applies(Some("https://s3.example.com"), env(&[])));
        assert!(!applies(None, env(&[])));
        for var in PROXY_VARS {
            assert!(
                !applies(
                    Some("http://127.0.0.1:3900"),
                    env(&[(var, "http://proxy:3128")])
                ),
                "{var}"
            );
        }
    }

    #[test]
    fn failures_get_kinds_that_object_store_retries() {
        let io = |kind| io::Error::new(kind, "x");
        assert_eq!(
            kind_of(&io(io::ErrorKind::ConnectionReset)),
            HttpErrorKind::Interrupted
        );
        assert_eq!(
            kind_of(&io(io::ErrorKind::ConnectionRefused)),
            HttpErrorKind::Connect
        );
        assert_eq!(
            kind_of(&io(io::ErrorKind::TimedOut)),
            HttpErrorKind::Timeout
        );
        assert_eq!(
            kind_of(&io(io::ErrorKind::InvalidData)),
            HttpErrorKind::Unknown
        );
        // Found through the chain, as when hyper-util wraps the I/O error.
        let wrapped = HttpError::new(HttpErrorKind::Unknown, io(io::ErrorKind::BrokenPipe));
        assert_eq!(kind_of(&wrapped), HttpErrorKind::Interrupted);
    }

    /// A connection right after it sent something back to a peer from which it had just
    /// received: the state in which Linux delays its ACKs ("interactive" mode).
    async fn interactive_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"answer").await.unwrap();
        let mut client = client;
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf).await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn every_write_leaves_the_delayed_ack_mode() {
        // Control: a plain write right after a read puts the socket in interactive mode, so
        // `TCP_QUICKACK` reads back as off. This is the state the client must not stay in.
        let (mut plain, _server) = interactive_pair().await;
        plain.write_all(b"next request").await.unwrap();
        assert!(
            !socket2::SockRef::from(&plain).tcp_quickack().unwrap(),
            "this kernel does not enter interactive mode here; the test below proves nothing"
        );

        let (client, _server) = interactive_pair().await;
        let mut stream = QuickAckStream(TokioIo::new(client));
        let written =
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, b"next request"))
                .await
                .unwrap();
        assert_eq!(written, 12);
        assert!(
            socket2::SockRef::from(stream.0.inner())
                .tcp_quickack()
                .unwrap()
        );

        let (client, _server) = interactive_pair().await;
        let mut stream = QuickAckStream(TokioIo::new(client));
        let parts = [io::IoSlice::new(b"head"), io::IoSlice::new(b"body")];
        std::future::poll_fn(|cx| Pin::new(&mut stream).poll_write_vectored(cx, &parts))
            .await
            .unwrap();
        assert!(
            socket2::SockRef::from(stream.0.inner())
                .tcp_quickack()
                .unwrap()
        );
    }
}
