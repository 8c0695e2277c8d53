//! `test-client echo-server`: a bare TCP echo server speaking the client
//! framing, the physical-limit baseline the benchmarks compare against.
//!
//! Every frame a client sends comes back unchanged. Because an
//! `EchoRequest` `ClientPacket` and an `EchoResponse` `ServerPacket` use the
//! same field numbers, the echoed bytes are exactly what gamemesh would
//! answer, so one load generator (`bench --no-login`) measures this server,
//! a relay in front of it, and gamemesh alike.
//!
//! It does the least a server can: one read, cut into frames by the shared
//! [`FrameCodec`] (so a bad length header closes the connection just as the
//! gateway would), and one write of every complete frame that read
//! delivered. Nothing is decoded past the length header.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use gamemesh_proto::FrameCodec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use crate::client::MAX_CLIENT_FRAME_BYTES;
use crate::limits;

/// Listen backlog. tokio's `TcpListener::bind` uses 128, and a burst of
/// 1,000 connects overflows it into one-second SYN retries (BENCH-NOTES.md).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Read buffer room made before each read: enough for a few hundred small
/// frames, so a pipelined client's burst is taken in one system call.
const READ_CHUNK: usize = 16 * 1024;

/// How the echo server runs.
#[derive(Debug, Clone)]
pub struct EchoServerOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Runtime worker threads; 0 runs everything on one current-thread
    /// runtime (the thread count is a knob worth turning on a small box).
    pub workers: usize,
}

/// Binds `addr` with a [`LISTEN_BACKLOG`] backlog. Must be called inside a
/// tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // A restarted benchmark server must not wait out TIME_WAIT on its port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections and echoes their frames until `shutdown` is
/// cancelled, then aborts the open connections and returns.
///
/// Connections live in a [`JoinSet`] rather than watching the token
/// themselves: a per-read cancellation check would cost the hot path for
/// nothing, and an echo connection has no state worth a graceful close.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set does not grow with churn.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(async move {
                    if let Err(e) = echo_connection(stream).await {
                        tracing::debug!(error = %e, "echo connection ended");
                    }
                });
            }
            Err(e) if limits::is_fd_exhaustion(&e) => {
                // Out of file descriptors: say so, and give closing
                // connections a moment instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed: open-file limit reached");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
    connections.shutdown().await;
}

/// Echoes one connection's frames until it closes or breaks the framing.
async fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    // Replies are written as soon as they are read; Nagle would hold them
    // back waiting for an ACK.
    stream.set_nodelay(true)?;
    let mut codec = FrameCodec::new(MAX_CLIENT_FRAME_BYTES);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        rbuf.reserve(READ_CHUNK);
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        // Every complete frame this read delivered goes out in one write.
        while let Some(body) = codec.decode(&mut rbuf).map_err(io::Error::other)? {
            codec.encode(body, &mut wbuf).map_err(io::Error::other)?;
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

/// Runs the echo server until Ctrl-C or SIGTERM, on the runtime
/// `opts.workers` asks for.
pub fn run(opts: &EchoServerOptions) -> anyhow::Result<()> {
    match limits::raise_open_file_limit() {
        Ok(limit) => eprintln!(
            "echo-server: open-file limit {} (hard {}): room for about {} connections",
            limit.soft,
            limit.hard,
            limit.sockets()
        ),
        Err(e) => eprintln!("echo-server: cannot read or raise the open-file limit: {e}"),
    }
    let runtime = if opts.workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.workers)
            .enable_all()
            .build()
    }
    .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let listener =
            bind(opts.listen).with_context(|| format!("cannot listen on {}", opts.listen))?;
        let local = listener.local_addr()?;
        let flavour = match opts.workers {
            0 => "current-thread runtime".to_owned(),
            n => format!("{n} worker threads"),
        };
        eprintln!("echo-server: listening on {local} ({flavour}); Ctrl-C or SIGTERM stops it");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, shutdown.clone()));
        gamemesh_node::wait_for_signal()
            .await
            .context("cannot watch SIGINT/SIGTERM")?;
        eprintln!("echo-server: stopping");
        shutdown.cancel();
        server.await.context("the echo server task failed")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, shutdown.clone()));
        (addr, shutdown, task)
    }

    #[tokio::test]
    async fn frames_come_back_unchanged_even_when_split_and_batched() {
        let (addr, shutdown, task) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Two frames, the second split across writes.
        let mut sent = Vec::new();
        sent.extend_from_slice(b"\0\0\0\x03abc");
        sent.extend_from_slice(b"\0\0\0\x05hello");
        s.write_all(&sent[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&sent[10..]).await.unwrap();
        let mut got = vec![0u8; sent.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_zero_length_frame_closes_the_connection() {
        let (addr, shutdown, task) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\0\0\0\0").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "closed, nothing echoed");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_open_connections() {
        let (addr, shutdown, task) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\0\0\0\x01x").await.unwrap();
        let mut one = [0u8; 5];
        s.read_exact(&mut one).await.unwrap();
        shutdown.cancel();
        task.await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
}
