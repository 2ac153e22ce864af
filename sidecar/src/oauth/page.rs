//! The one HTML page the server renders: the authorization page. It needs no script: a person
//! signs the shown challenge with their key (the `sign` example prints the signature) and pastes
//! it, or follows an upstream login link. Every interpolated value is HTML-escaped.

use warp::Reply;
use warp::http::HeaderValue;

/// HTML-escape text for element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page shows.
pub struct AuthorizePage<'a> {
    pub client_name: &'a str,
    pub scopes: &'a [String],
    pub request_id: &'a str,
    pub challenge: &'a str,
    /// (provider name, link that starts its login for this request).
    pub upstream: Vec<(String, String)>,
}

impl AuthorizePage<'_> {
    pub fn render(&self) -> warp::reply::Response {
        let upstream: String = self
            .upstream
            .iter()
            .map(|(name, href)| {
                format!(
                    "<p><a class=\"up\" href=\"{}\">Sign in with {}</a></p>\n",
                    escape(href),
                    escape(name)
                )
            })
            .collect();
        let body = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to {client}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}
input,textarea{{width:100%;font-family:monospace;margin:.25rem 0 1rem}}code{{word-break:break-all}}</style>
</head><body>
<h1>Sign in to {client}</h1>
<p>{client} asks for: <code>{scopes}</code></p>
<form method="post" action="authorize/complete">
<input type="hidden" name="request_id" value="{request_id}">
<label for="challenge">Sign this text with your key, as it is (it names this integration, so
the signature is good for this sign-in only; for example
<code>cargo run -q -p broker-auth-examples --bin sign -- --key-file KEY_FILE 'TEXT'</code>):</label>
<input id="challenge" name="challenge" value="{challenge}" readonly>
<label for="public_key">Your public key</label>
<input id="public_key" name="public_key" autocomplete="off" required>
<label for="signature">Signature (base64url)</label>
<textarea id="signature" name="signature" rows="3" required></textarea>
<button type="submit">Sign in</button>
</form>
{upstream}</body></html>
"#,
            client = escape(self.client_name),
            scopes = escape(&self.scopes.join(" ")),
            request_id = escape(self.request_id),
            challenge = escape(self.challenge),
        );
        let mut res = warp::reply::html(body).into_response();
        res.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_escaped() {
        assert_eq!(
            escape(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }
}
