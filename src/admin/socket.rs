//! The gateway's local admin socket: one JSON command per line, one JSON reply per line.
//! It is a unix socket with mode 0600, and each connection's peer credentials (SO_PEERCRED)
//! are checked: only the account running the gateway, or root, is served.

use super::{Admin, Command, Reply};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Binds the socket (replacing a stale one) and serves it on a background thread.
///
/// # Errors
/// The I/O error if the socket cannot be bound, its mode set or the thread started.
///
/// # Security
/// Two checks: the socket file's mode (0600), and each peer's uid as the kernel reports it
/// at `connect` (SO_PEERCRED, which the peer cannot forge): a peer that is neither the
/// gateway's account (the socket file's owner) nor root gets a refusal and no command runs,
/// even when the file's mode was loosened or the connection handed over.
pub(crate) fn serve(path: &Path, admin: Arc<Admin>) -> std::io::Result<()> {
    if path.exists() {
        // A live gateway would hold the database lock, so whatever is here is stale.
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)?.uid()
    };
    std::thread::Builder::new()
        .name("portcullis-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = handle(stream, &admin, owner) {
                            tracing::warn!(error = %e, "admin connection failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
                }
            }
        })?;
    Ok(())
}

/// Whether a peer with `uid` may use a socket owned by `owner`.
fn allowed(uid: u32, owner: u32) -> bool {
    uid == owner || uid == 0
}

fn handle(stream: UnixStream, admin: &Admin, owner: u32) -> std::io::Result<()> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let peer = getsockopt(&stream, PeerCredentials).map_err(std::io::Error::from)?;
    if !allowed(peer.uid(), owner) {
        tracing::warn!(
            uid = peer.uid(),
            pid = peer.pid(),
            "admin socket: peer refused (neither the gateway's account nor root)"
        );
        let refusal = Reply {
            ok: false,
            message: "refused: the admin socket serves only the gateway's account and root".into(),
            users: Vec::new(),
            devices: Vec::new(),
            invitations: Vec::new(),
            token: None,
        };
        let mut out = serde_json::to_vec(&refusal).map_err(std::io::Error::other)?;
        out.push(b'\n');
        let mut stream = stream;
        return stream.write_all(&out);
    }
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let reply = match serde_json::from_str::<Command>(&line) {
        Ok(cmd) => admin.execute(cmd).unwrap_or_else(|e| Reply {
            ok: false,
            message: e.to_string(),
            users: Vec::new(),
            devices: Vec::new(),
            invitations: Vec::new(),
            token: None,
        }),
        Err(e) => Reply {
            ok: false,
            message: format!("malformed command: {e}"),
            users: Vec::new(),
            devices: Vec::new(),
            invitations: Vec::new(),
            token: None,
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let mut stream = stream;
    stream.write_all(&out)
}

/// Sends a command to a running gateway. `Ok(None)` means no gateway is listening there.
///
/// # Errors
/// I/O errors other than "nobody is listening".
pub(crate) fn send(path: &Path, cmd: &Command) -> std::io::Result<Option<Reply>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(cmd).map_err(std::io::Error::other)?;
    line.push(b'\n');
    match stream.write_all(&line) {
        // A gateway that refuses this peer answers before reading: its refusal is still there.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(std::io::Error::other)
}
