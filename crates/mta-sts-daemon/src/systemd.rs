//! systemd readiness notification (`sd_notify(3)` protocol): one datagram to `$NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`) to the socket named by `NOTIFY_SOCKET`, if set. A path starting with `@`
/// names a Linux abstract socket. Does nothing (Ok) when the variable is unset.
pub(crate) fn notify(state: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract NOTIFY_SOCKET",
            ));
        }
    }
    socket.send_to(state.as_bytes(), target)?;
    Ok(())
}
