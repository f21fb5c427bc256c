//! Reads a password from a hidden prompt on a terminal, or the first line of stdin otherwise.
//! Never from argv, where every user of the machine could see it.

use crate::secret::SecretString;
use std::io::{BufRead, IsTerminal};

/// The password typed (twice, on a terminal) or the first line of stdin without its line end.
///
/// # Errors
/// A message for the operator when the two entries differ, stdin cannot be read, or the
/// password is empty.
pub(crate) fn read(prompt: &str) -> Result<SecretString, String> {
    let pw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the two passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        return Err(
            "no password given (write it to stdin, or run on a terminal for a prompt)".into(),
        );
    }
    Ok(SecretString::new(pw))
}
