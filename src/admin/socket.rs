//! The gateway's local admin socket: one JSON command per line, one JSON reply per line.
//! It is a unix socket with mode 0600, so only the account running the gateway can use it.

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
/// Every command is accepted from whoever connects: the socket file's mode (0600) is the
/// only check, so `path` must be in a directory other accounts cannot write to.
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
    std::thread::Builder::new()
        .name("portcullis-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = handle(stream, &admin) {
                            tracing::warn!(error = %e, "admin connection failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
                }
            }
        })?;
    Ok(())
}

fn handle(stream: UnixStream, admin: &Admin) -> std::io::Result<()> {
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
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(std::io::Error::other)
}
