//! The one socket option std does not offer.

use std::net::TcpStream;

/// Re-arms Linux's quick-ACK mode on a connected TCP socket.
///
/// baresip's ctrl_tcp socket does not disable Nagle's algorithm: when it
/// writes an event and then the reply of a command back to back, the reply
/// waits until we ACK the event, and Linux delays that ACK by up to 40 ms.
/// Quick-ACK mode makes the kernel ACK at once, but it is not sticky (the
/// kernel leaves it again on its own), so the reader calls this after every
/// `recv`.
#[cfg(target_os = "linux")]
pub fn quickack(stream: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_quickack(true)
}

/// Quick-ACK mode is Linux-only; elsewhere this does nothing.
#[cfg(not(target_os = "linux"))]
pub fn quickack(_stream: &TcpStream) -> std::io::Result<()> {
    Ok(())
}
