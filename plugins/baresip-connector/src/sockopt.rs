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
    use std::os::fd::AsRawFd;
    set_int(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1)
}

/// Quick-ACK mode is Linux-only; elsewhere this does nothing.
#[cfg(not(target_os = "linux"))]
pub fn quickack(_stream: &TcpStream) -> std::io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_int(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `fd` comes from a `TcpStream` borrowed by the caller for the
    // whole call, so it is an open socket; the option value points to a live
    // `c_int` on this stack frame and the length passed is exactly its size.
    // setsockopt only reads those bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn quickack_can_be_set_on_a_connected_socket() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        super::quickack(&s).expect("setsockopt");
    }
}
