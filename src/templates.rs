//! Where templates come from: the operator's folder first, then the built-in copy, so any
//! page or message can be replaced by dropping a file of the same name in place.

use std::path::PathBuf;

/// A minijinja loader over `dir` (when configured) and the built-in `(name, source)` pairs.
pub fn loader(
    dir: Option<PathBuf>,
    builtin: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Result<Option<String>, minijinja::Error> + Send + Sync + 'static {
    move |name| {
        if let Some(dir) = &dir {
            let candidate = dir.join(name);
            if !name.contains("..") && candidate.is_file() {
                return std::fs::read_to_string(&candidate).map(Some).map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("cannot read {}: {e}", candidate.display()),
                    )
                });
            }
        }
        Ok(builtin
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, src)| (*src).to_string()))
    }
}
