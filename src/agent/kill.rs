//! Closing a connection from outside its session.
//!
//! russh runs each session in a task of its own and offers no way to abort
//! it; its `Handle::disconnect` is only read once key exchange is over, so
//! a peer that stalls the key exchange could never be dropped. The agent
//! therefore hands russh a stream wrapped in [`Killable`]: once its
//! [`KillSwitch`] is thrown, every read and write fails, the session ends
//! on its own and drops the socket.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
struct Switch {
    killed: AtomicBool,
    authenticated: AtomicBool,
    waker: AtomicWaker,
}

/// Closes one connection's stream; cheap to clone.
#[derive(Clone, Default)]
pub struct KillSwitch(Arc<Switch>);

impl KillSwitch {
    /// Makes the stream fail from now on and wakes the task using it.
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Whether [`KillSwitch::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }

    /// Records that the connection authenticated (the login grace time no
    /// longer applies to it).
    pub fn set_authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Release);
    }

    /// Whether the connection authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.0.authenticated.load(Ordering::Acquire)
    }

    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        // Register before looking, so a kill between the two still wakes.
        self.0.waker.register(cx.waker());
        if self.is_killed() {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by porthole-agent",
            ))
        } else {
            Ok(())
        }
    }
}

/// A stream that fails once its switch is thrown.
pub struct Killable<S> {
    inner: S,
    switch: KillSwitch,
}

impl<S> Killable<S> {
    /// Wraps `inner`, to be closed by `switch`.
    pub fn new(inner: S, switch: KillSwitch) -> Self {
        Killable { inner, switch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down a killed stream is what the session does on its
        // way out: let it, so it ends without a second error.
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn a_blocked_read_fails_when_killed() {
        let (a, mut b) = tokio::io::duplex(64);
        let switch = KillSwitch::default();
        let mut killable = Killable::new(a, switch.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            killable.read(&mut buf).await
        });
        b.write_all(b"").await.expect("write");
        tokio::task::yield_now().await;
        switch.kill();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the read was not woken")
            .expect("join");
        assert_eq!(
            result.expect_err("read succeeded").kind(),
            io::ErrorKind::ConnectionAborted
        );
    }
}
