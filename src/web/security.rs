//! Safe by default (§16): the response headers, the token, the host a
//! request names, the origin of a POST and the CSRF token of a form.
//!
//! The page checks before it reads (§18): `guard` answers 401 without the
//! token and 403 for a read-only page or another origin before any handler
//! runs, and [`CheckedForm`], the one way a POST handler gets its form,
//! looks for the CSRF token in the raw body before the form proper is
//! parsed, so that a POST without the token is 403 whatever its content
//! type or body, never the form parser's 415 or 422.

use axum::body::{Body, Bytes};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{pages, Shared, Web};

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every response's headers: a strict Content-Security-Policy (no inline
/// script or style, only our own `/static/` files; no framing), no sniffing,
/// no referrer to other sites.
pub(super) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// The token (when set; without one, the request must name a loopback host),
/// then for a POST: not read-only, and from our origin. All of it before any
/// handler, and so before any body is read; the CSRF token in the body is
/// [`CheckedForm`]'s.
pub(super) async fn guard(State(web): State<Shared>, request: Request, next: Next) -> Response {
    if web.token.is_none() && !loopback_host(request.headers()) {
        // A page on another site whose name was made to resolve to 127.0.0.1
        // (DNS rebinding) would be "same origin" with us: without a token,
        // only the loopback names are ours.
        return forbidden(
            &web,
            "without a token this page answers only to a loopback address (127.0.0.1, [::1] or localhost)",
        );
    }
    if let Some(token) = &web.token {
        if !authorized(request.headers(), token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"manage\"")],
                "a token is required: Authorization: Bearer TOKEN, or Basic with the token as the password\n",
            )
                .into_response();
        }
    }
    if request.method() == Method::POST {
        if web.read_only {
            return forbidden(
                &web,
                "this page is read-only (manage web --read-only): nothing can be changed here",
            );
        }
        if !same_origin(request.headers()) {
            return forbidden(
                &web,
                "the form was sent from another site (its Origin or Referer is not this page's)",
            );
        }
    }
    next.run(request).await
}

/// Who sent a request: its address, and the user a trusted proxy (§23)
/// named in `[web] trusted_proxy_header`. The header is believed only from
/// an address of `[web] trusted_proxies`; from anywhere else it is ignored,
/// as is a value that is empty, not text, or too long to be a user name.
pub(super) struct Who {
    pub address: SocketAddr,
    pub user: Option<String>,
}

/// The longest user name a proxy may send.
const USER_MAX_CHARS: usize = 200;

impl Who {
    /// The audit actor: `web:USER`, else `web:ADDR`.
    pub fn actor(&self) -> crate::ops::Actor {
        match &self.user {
            Some(user) => crate::ops::Actor::web_user(user),
            None => crate::ops::Actor::web(super::client_ip(self.address)),
        }
    }
}

fn proxied_user(web: &Web, address: SocketAddr, headers: &HeaderMap) -> Option<String> {
    let name = web.config.web.trusted_proxy_header.as_deref()?;
    let ip = super::client_ip(address);
    if !web
        .config
        .web
        .trusted_proxies
        .iter()
        .any(|b| b.contains(ip))
    {
        return None;
    }
    let user = headers.get(name)?.to_str().ok()?.trim();
    (!user.is_empty()
        && user.chars().count() <= USER_MAX_CHARS
        && !user.chars().any(char::is_control))
    .then(|| user.to_string())
}

impl FromRequestParts<Shared> for Who {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Shared) -> Result<Self, Response> {
        let Some(ConnectInfo(address)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned()
        else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the client's address is unknown\n",
            )
                .into_response());
        };
        let user = proxied_user(web, address, &parts.headers);
        Ok(Who { address, user })
    }
}

/// Compare without an early exit, so that timing says nothing of the token.
fn same_secret(given: &[u8], wanted: &[u8]) -> bool {
    given.len() == wanted.len()
        && given
            .iter()
            .zip(wanted)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use base64::Engine as _;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return same_secret(credentials.as_bytes(), token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        // Any user name: the token is the password.
        let password = text.split_once(':').map_or("", |(_, p)| p);
        return same_secret(password.as_bytes(), token.as_bytes());
    }
    false
}

/// The `Host` a request names is this machine's loopback: `localhost`, or a
/// loopback address, with any port. A request without one (HTTP/1.0) passes.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    match url::Url::parse(&format!("http://{host}/")) {
        Ok(url) => match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        Err(_) => false,
    }
}

/// A POST's `Origin` (else `Referer`) must name the host it was sent to. A
/// request with neither (a script, not a browser) passes: the CSRF token
/// still has to be right.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (source, host) {
        (None, _) => true,
        (Some(source), Some(host)) => url::Url::parse(source).ok().is_some_and(|url| {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }),
        (Some(_), None) => false,
    }
}

pub(super) fn forbidden(web: &Web, message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::error_page(&web.page(), StatusCode::FORBIDDEN, message),
    )
        .into_response()
}

/// The refusal of a form without this process's CSRF token; None when it has it.
fn csrf_refusal(web: &Web, given: Option<&str>) -> Option<Response> {
    if given.is_some_and(|given| same_secret(given.as_bytes(), web.csrf.as_bytes())) {
        None
    } else {
        Some(forbidden(
            web,
            "the form's security token is missing or out of date: reload the page and try again",
        ))
    }
}

/// The `csrf` field of a body read as `application/x-www-form-urlencoded`
/// whatever its declared type: anything else (JSON, nothing at all) simply
/// has no such field.
fn sent_csrf(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned())
}

/// A POST's form, handed over only once its CSRF token is right. The body
/// is read raw (within axum's usual limit), the token looked for in it, and
/// only then is it parsed as the form `T`, whose refusals (415 for a body
/// that is not a form, 422 for one that does not fit) are axum's as before.
/// A body that cannot be read at all carries no token we could check: 403.
pub(super) struct CheckedForm<T>(pub T);

impl<T> FromRequest<Shared> for CheckedForm<T>
where
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, web: &Shared) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), web)
            .await
            .unwrap_or_default();
        if let Some(refusal) = csrf_refusal(web, sent_csrf(&body).as_deref()) {
            return Err(refusal);
        }
        let request = Request::from_parts(parts, Body::from(body));
        match Form::<T>::from_request(request, web).await {
            Ok(Form(form)) => Ok(CheckedForm(form)),
            Err(rejection) => Err(rejection.into_response()),
        }
    }
}

/// The CSRF token of this process: random, embedded in every form.
pub(super) fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random bytes for the CSRF token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_accepted_as_bearer_or_as_a_basic_password_only() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(authorized(&with("Bearer s3cret"), "s3cret"));
        assert!(authorized(&with("bearer s3cret"), "s3cret"));
        // "anyone:s3cret"
        assert!(authorized(&with("Basic YW55b25lOnMzY3JldA=="), "s3cret"));
        assert!(!authorized(&with("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&with("Basic czNjcmV0"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn only_loopback_hosts_are_ours_without_a_token() {
        let host = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
            headers
        };
        for ours in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "127.1.2.3",
        ] {
            assert!(loopback_host(&host(ours)), "{ours}");
        }
        for theirs in [
            "evil.example:8000",
            "10.0.0.1:8000",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!loopback_host(&host(theirs)), "{theirs}");
        }
        assert!(loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn a_post_from_another_origin_is_told_apart() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        let host = (header::HOST, "127.0.0.1:8000");
        assert!(same_origin(&with(std::slice::from_ref(&host))));
        assert!(same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8000")
        ])));
        assert!(same_origin(&with(&[
            host.clone(),
            (header::REFERER, "http://127.0.0.1:8000/jobs/x")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&with(&[host, (header::ORIGIN, "null")])));
    }
}
