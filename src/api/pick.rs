//! Which running component a request means: the one it names, or the only one.

use axum::http::StatusCode;

/// The component named `named` among `all` (id, handle), or the only one when none is
/// named. Refused: several and none named (400, `several`), none with that id or none
/// at all (404, `missing`).
pub(super) fn pick<T>(
    named: Option<&String>,
    all: Vec<(String, T)>,
    several: &str,
    missing: &str,
) -> Result<(String, T), (StatusCode, String)> {
    let count = all.len();
    let mut all = all.into_iter();
    let found = match named {
        Some(id) => all.find(|(i, _)| i == id),
        None if count > 1 => return Err((StatusCode::BAD_REQUEST, several.to_owned())),
        None => all.next(),
    };
    found.ok_or_else(|| (StatusCode::NOT_FOUND, missing.to_owned()))
}
