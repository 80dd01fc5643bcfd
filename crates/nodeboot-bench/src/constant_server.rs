//! The ceiling of nodeboot's HTTP stack on this machine: the same runtime (tokio, multi-thread),
//! the same HTTP/1.1 server (hyper's `http1::Builder` with keep-alive, a listen backlog of 4096,
//! TCP_NODELAY), answering every request with one constant body and nothing else: no routing,
//! no query parsing, no lookup, no metrics. nodeboot's throughput divided by this one's is the
//! share the stack leaves to nodeboot's own work.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// The same backlog as nodeboot's boot listener.
const LISTEN_BACKLOG: u32 = 4096;

/// Serves `body` on `listen` until the process is killed.
pub fn run(listen: SocketAddr, body: Bytes, workers: Option<usize>) -> std::io::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        runtime.worker_threads(workers.max(1));
    }
    runtime.enable_all().build()?.block_on(serve(listen, body))
}

async fn serve(listen: SocketAddr, body: Bytes) -> std::io::Result<()> {
    let socket = match listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("constant-server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        // The headers nodeboot sends with a script: the same bytes on the wire but the body.
        let service = service_fn(move |_: Request<hyper::body::Incoming>| {
            let mut response = Response::new(Full::new(body.clone()));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn answers_every_path_with_the_body() {
        let port = crate::ports::free_ports(1).unwrap()[0];
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        std::thread::spawn(move || run(addr, Bytes::from_static(b"#!ipxe\nboot\n"), Some(1)));
        let mut stream = (0..200)
            .find_map(|_| {
                std::net::TcpStream::connect(addr).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                })
            })
            .expect("the server listens");
        stream
            .write_all(b"GET /anything?mac=x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("cache-control: no-store\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n#!ipxe\nboot\n"), "{answer}");
    }
}
