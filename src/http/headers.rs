//! Header parsing and redaction: what a user writes as `Name: value`, and
//! what may be shown of a URL or a session id (both may be credentials).

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

/// Parses `Name: value` as given to `--header`.
///
/// # Errors
/// A message naming what is wrong with the header.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header {text:?} has no ':'; write it as 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header {name} has characters HTTP does not allow"))?;
    Ok((name, value))
}

/// A URL for messages and logs: no query, no user info (either may hold a
/// credential).
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The first characters of a session id, for logs: the id is a credential.
pub fn session_prefix(id: &HeaderValue) -> String {
    let text = id.to_str().unwrap_or("?");
    let prefix: String = text.chars().take(8).collect();
    format!("{prefix}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_arguments() {
        let (name, value) = parse_header("Authorization:  Bearer x ").expect("valid");
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(value, "Bearer x");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
