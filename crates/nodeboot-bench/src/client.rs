//! One keep-alive HTTP/1.1 connection to a server under test, one request at a time, reopened
//! after any error: the compare's client. Bodies are read whole.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
}

pub struct Connection {
    server: SocketAddr,
    host: HeaderValue,
    timeout: Duration,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Connection {
    /// Connects lazily, on the first request.
    pub fn new(server: SocketAddr, timeout: Duration) -> Connection {
        let host = HeaderValue::from_str(&server.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Connection {
            server,
            host,
            timeout,
            sender: None,
        }
    }

    /// `GET path`, with `X-Forwarded-For` when given; the status and the whole body.
    pub async fn get(
        &mut self,
        path: &str,
        forwarded_for: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let result = tokio::time::timeout(self.timeout, self.exchange(path, forwarded_for))
            .await
            .unwrap_or(Err(ClientError::Timeout(self.timeout)));
        if result.is_err() {
            // The connection's state is unknown after an error: the next request opens another.
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        path: &str,
        forwarded_for: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.connect().await?),
        };
        let mut request = Request::get(path).header(HOST, self.host.clone());
        if let Some(ip) = forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        let request = request.body(Empty::new())?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, ClientError> {
        let stream = TcpStream::connect(self.server)
            .await
            .map_err(ClientError::Connect)?;
        // Small requests, one at a time: do not let Nagle hold them back.
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        let (sender, connection) = handshake(TokioIo::new(stream)).await?;
        // Drives the connection; it ends when the sender is dropped or the server closes, and
        // any error shows in the sender's next request.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}
