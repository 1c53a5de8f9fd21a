//! `/authorize` (GET and POST, OIDC Core §3.1.2.1), and the sign-in and consent steps that an
//! authorization request may pass through before a code is issued.
//!
//! A pushed request (RFC 9126) arrives as `client_id` and `request_uri`: it is taken from the
//! store once, and its parameters stand for the request; a request object (RFC 9101) arrives
//! as `client_id` and `request`: once verified, its claims stand for the request. The sign-in
//! and consent forms carry such vouched-for parameters on with a mark (an HMAC under the pepper over the parameters, an expiry and a random
//! cookie set in the browser that took the request) that says they were pushed, so a client
//! that must push its requests is not refused halfway through its own, and a mark copied to
//! another browser, or onto other parameters, proves nothing.

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{Request, Response, handler};

use super::browser::{append_cookie, cookie, csrf_token, current_session, set_cookie};
use super::error::PageError;
use super::respond::{allow_form_redirect, authorize_error, authorize_success, page};
use crate::oauth::authorize::{
    AuthzRequest, PageReason, Rejection, acr_satisfied, validate, wants_phishing_resistant,
};
use crate::oauth::client::Client;
use crate::oauth::error::{AuthorizeError, AuthorizeErrorCode as E};
use crate::oauth::par;
use crate::oauth::params::Params;
use crate::oauth::request_object;
use crate::secrets::{AuthorizationCode, Purpose, random_token};
use crate::state::{AppState, secs};
use crate::store::{Authn, CodeRow, Session};
use crate::views::Msg;

#[handler]
pub async fn authorize(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let raw = if req.method() == Method::POST {
        if !is_form(req) {
            return Err(PageError::bad_request(Msg::AuthorizePostNotForm));
        }
        body.into_vec()
            .await
            .map_err(|_| PageError::bad_request(Msg::BodyUnreadable))?
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    let params = Params::parse(&raw)?;
    let now = state.clock.now();
    let session = current_session(state, req, now).await;
    if let Some(random) = params.get("request_uri").and_then(par::random_part) {
        // A pushed request: its parameters stand for this one.
        let pushed = pushed_request(state, &params, random, now).await?;
        return run_vouched(state, req, pushed, session, now).await;
    }
    if params.contains("request") {
        return signed_request(state, req, params, session, now).await;
    }
    run(state, req, params, session, None, now).await
}

/// [`run_with`] for parameters vouched for at the start of this flow (taken from a pushed
/// request, or from a verified request object): this browser gets the cookie their mark is
/// bound to, so the sign-in and consent steps still know them as vouched for.
async fn run_vouched(
    state: &AppState,
    req: &Request,
    params: Params,
    session: Option<Session>,
    now: i64,
) -> Result<Response, PageError> {
    let flow = Pushed {
        binding: random_token(16),
        expires_at: now + PUSHED_MARK_LIFETIME,
    };
    let mut resp = run_with(state, req, params, session, None, now, Some(flow.clone())).await?;
    let cookie = set_cookie(
        state,
        pushed_cookie_name(state),
        &flow.binding,
        Some(PUSHED_MARK_LIFETIME),
    );
    append_cookie(&mut resp, Some(cookie));
    Ok(resp)
}

/// RFC 9101 §5, OIDC Core §6.1: a request object passed by value. Verified with the client's
/// keys, its claims are the request (other parameters but `client_id` are dropped). Until it is
/// verified only the parameters beside it can say where an error may go: to their
/// `redirect_uri` if that is registered for the client, else on a page.
async fn signed_request(
    state: &AppState,
    req: &Request,
    mut params: Params,
    session: Option<Session>,
    now: i64,
) -> Result<Response, PageError> {
    let object = params.remove("request").unwrap_or_default();
    let client = match params.get("client_id") {
        Some(id) => load_client(state, req, id).await?,
        None => None,
    };
    let Some(client) = client else {
        // No client to verify with: the page that says so.
        return run(state, req, params, session, None, now).await;
    };
    let verified = state
        .clients()
        .verify_request_object(&client, &object)
        .await
        .and_then(|claims| request_object::parameters(&client.client_id, claims));
    match verified {
        // RFC 9126 §6: a client that must push its requests sends its object to /par; here
        // it is refused as any request not pushed (the mark is never made for it).
        Ok(inner) if must_push(state, &client) => run(state, req, inner, session, None, now).await,
        Ok(inner) => run_vouched(state, req, inner, session, now).await,
        Err(why) => {
            let redirect = match validate(&params, Some(&client)) {
                Ok(r) => r.redirect,
                Err(Rejection::Redirect(redirect, _)) => *redirect,
                Err(Rejection::Page(_)) => {
                    return Err(PageError::new(
                        StatusCode::BAD_REQUEST,
                        Msg::AuthorizeInvalidTitle,
                        Msg::RequestObjectInvalid,
                    ));
                }
            };
            Ok(authorize_error(
                state,
                &redirect,
                &AuthorizeError::new(E::InvalidRequestObject, why),
            ))
        }
    }
}

/// RFC 9126 §5, §6: the server, or this client, requires pushed requests.
fn must_push(state: &AppState, client: &Client) -> bool {
    state.config.par.required || client.metadata.require_pushed_authorization_requests
}

/// The parameter that marks carried parameters as pushed.
const PUSHED_MARK: &str = "pushed_mark";
/// How long a pushed request's sign-in may take (a mailed sign-in link lives 15 minutes).
const PUSHED_MARK_LIFETIME: i64 = 30 * 60;

/// A pushed request's flow through sign-in and consent in one browser: the random value of
/// the browser's pushed-flow cookie the mark is bound to, and when the mark runs out.
#[derive(Clone)]
struct Pushed {
    binding: String,
    expires_at: i64,
}

fn pushed_cookie_name(state: &AppState) -> &'static str {
    if state.config.issuer_is_https() {
        "__Host-latchkey_par"
    } else {
        "latchkey_par"
    }
}

/// RFC 9126 §4: the pushed request named by `request_uri`, taken once, for the `client_id`
/// that pushed it; other parameters of this request are ignored.
async fn pushed_request(
    state: &AppState,
    params: &Params,
    random: &str,
    now: i64,
) -> Result<Params, PageError> {
    let Some(client_id) = params.get("client_id") else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::AuthorizeInvalidTitle,
            Msg::NoClientId,
        ));
    };
    let digests = state
        .pepper
        .lookup_digests(Purpose::PushedRequest, random.as_bytes());
    let stored = state
        .store
        .take_pushed_request(&digests, client_id, now)
        .await?
        .ok_or(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::AuthorizeInvalidTitle,
            Msg::PushedRequestUnusable,
        ))?;
    Ok(Params::parse(stored.as_bytes())?)
}

/// What the mark is made over: every parameter but the mark, the expiry, and the browser's
/// pushed-flow cookie, so a mark copied to another browser (or onto other parameters, or
/// another `prompt`) proves nothing.
fn mark_input(params: &Params, flow: &Pushed) -> String {
    let mut covered = params.clone();
    covered.remove(PUSHED_MARK);
    format!(
        "{}|{}:{}|{}",
        flow.expires_at,
        flow.binding.len(),
        flow.binding,
        covered.encode()
    )
}

fn pushed_mark(state: &AppState, params: &Params, flow: &Pushed) -> String {
    let mac = state
        .pepper
        .digest(Purpose::PushedCarry, mark_input(params, flow).as_bytes());
    format!("{}.{mac}", flow.expires_at)
}

/// Takes the mark out of `params`: the flow it belongs to, if it was there, unexpired, made
/// over them and bound to this browser's pushed-flow cookie.
fn take_pushed_mark(
    state: &AppState,
    req: &Request,
    params: &mut Params,
    now: i64,
) -> Option<Pushed> {
    let mark = params.remove(PUSHED_MARK)?;
    let (expires_at, mac) = mark.split_once('.')?;
    let flow = Pushed {
        binding: cookie(req, pushed_cookie_name(state))?,
        expires_at: expires_at.parse::<i64>().ok()?,
    };
    let valid = flow.expires_at >= now
        && state.pepper.verify(
            Purpose::PushedCarry,
            mark_input(params, &flow).as_bytes(),
            mac,
        );
    valid.then_some(flow)
}

/// The parameters the sign-in form carries: `prompt=login` is taken out, since signing in
/// there is what it asked for.
fn without_prompt_login(params: &Params) -> Params {
    let mut carried = params.clone();
    if let Some(prompt) = carried.remove("prompt") {
        let rest: Vec<&str> = prompt
            .split(' ')
            .filter(|p| !p.is_empty() && *p != "login")
            .collect();
        if !rest.is_empty() {
            carried.insert("prompt", rest.join(" "));
        }
    }
    carried
}

pub fn is_form(req: &Request) -> bool {
    req.content_type()
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

/// The client of `client_id`; none when there is none. A client ID metadata document that
/// cannot be used is an error page that says why (RFC 6749 §4.1.2.1: an invalid client is
/// told to the user, never redirected to).
pub async fn load_client(
    state: &AppState,
    req: &Request,
    client_id: &str,
) -> Result<Option<Client>, PageError> {
    use crate::clients::Lookup;
    let ip = super::browser::client_ip(state, req);
    let clients = crate::clients::Clients {
        peer: ip.as_deref(),
        ..state.clients()
    };
    match clients.lookup(client_id).await {
        Ok(Lookup::Found(c)) => Ok(Some(c)),
        Ok(Lookup::Unknown) => Ok(None),
        Ok(Lookup::Refused(why)) => Err(PageError::Why {
            status: StatusCode::BAD_REQUEST,
            title: Msg::AuthorizeInvalidTitle,
            message: Msg::ClientDocumentRefused,
            why,
        }),
        Err(e) => Err(PageError::server("the client lookup", e)),
    }
}

/// Validates the request and moves it on: to sign-in, to consent, or to a code.
/// `consent` is the user's answer when this runs from the consent form.
pub async fn run(
    state: &AppState,
    req: &Request,
    params: Params,
    session: Option<Session>,
    consent: Option<bool>,
    now: i64,
) -> Result<Response, PageError> {
    run_with(state, req, params, session, consent, now, None).await
}

/// [`run`], for a pushed request just taken (`fresh`), or else whatever the parameters'
/// mark says.
async fn run_with(
    state: &AppState,
    req: &Request,
    mut params: Params,
    session: Option<Session>,
    consent: Option<bool>,
    now: i64,
    fresh: Option<Pushed>,
) -> Result<Response, PageError> {
    let pushed = match fresh {
        Some(flow) => {
            params.remove(PUSHED_MARK);
            Some(flow)
        }
        None => take_pushed_mark(state, req, &mut params, now),
    };
    let client = match params.get("client_id") {
        Some(id) => load_client(state, req, id).await?,
        None => None,
    };
    let request = match validate(&params, client.as_ref()) {
        Ok(r) => r,
        Err(Rejection::Page(why)) => {
            let why = match why {
                PageReason::NoClientId => Msg::NoClientId,
                PageReason::UnknownClient => Msg::ClientNotRegistered,
                PageReason::NoRedirectUri => Msg::NoRedirectUri,
                PageReason::UnregisteredRedirectUri => Msg::RedirectUriUnregistered,
            };
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                Msg::AuthorizeInvalidTitle,
                why,
            ));
        }
        Err(Rejection::Redirect(redirect, err)) => {
            return Ok(authorize_error(state, &redirect, &err));
        }
    };
    let Some(client) = client else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::AuthorizeInvalidTitle,
            Msg::UnknownClient,
        ));
    };
    let fail = |code: E, why: &'static str| {
        Ok(authorize_error(
            state,
            &request.redirect,
            &AuthorizeError::new(code, why),
        ))
    };
    // RFC 9126 §5, §6: a client (or a server) that requires pushed requests. A request
    // vouched for here was pushed, or was a request object of a client that need not push.
    if pushed.is_none() && must_push(state, &client) {
        return fail(
            E::InvalidRequest,
            "authorization requests must be pushed to the pushed_authorization_request_endpoint first (RFC 9126)",
        );
    }
    // RFC 8707 §2: a resource this client may have tokens for (configured and given to it,
    // or one of our own APIs).
    if let Some(r) = &request.resource
        && !state.audiences().may_have(&client, r).await?
    {
        return fail(
            E::InvalidTarget,
            "the requested resource is not one this client may have tokens for",
        );
    }
    // RFC 9101 §10.5 (require_signed_request_object): vouched for here means it came as a
    // verified request object, or was pushed (and /par takes such a client's requests only
    // as request objects).
    if pushed.is_none() && client.metadata.require_signed_request_object {
        return fail(
            E::InvalidRequest,
            "this client's authorization requests must be signed request objects (RFC 9101)",
        );
    }
    // What the sign-in and consent forms carry on: marked again (same flow) when pushed.
    let carry = |params: Params| match &pushed {
        Some(flow) => {
            let mut marked = params.clone();
            marked.insert(PUSHED_MARK, pushed_mark(state, &params, flow));
            marked
        }
        None => params,
    };

    // id_token_hint (OIDC Core §3.1.2.1): one of ours, for this client; expiry does not matter.
    let hint_sub = match &request.id_token_hint {
        None => None,
        Some(hint) => match hint_subject(state, hint, &client.client_id, now).await {
            Some(sub) => Some(sub),
            None => {
                return fail(
                    E::InvalidRequest,
                    "id_token_hint is not a valid ID Token issued to this client",
                );
            }
        },
    };

    // Sign-in: a live session that is fresh enough, of the hinted user, unless told to ask again.
    let usable = session.filter(|s| {
        !request.prompt.login
            && hint_sub.as_deref().is_none_or(|sub| sub == s.user_id)
            && request.max_age.is_none_or(|max| now - s.auth_time <= max)
            && acr_satisfied(&request.acr_values, &s.acr)
    });
    let Some(session) = usable else {
        if request.prompt.none {
            return fail(E::LoginRequired, "the user must sign in");
        }
        return Ok(login_page(
            state,
            req,
            &carry(without_prompt_login(&params)),
            &client,
            None,
            "",
            StatusCode::OK,
        ));
    };

    // Consent, remembered per client and scope set.
    if !client.metadata.first_party {
        let covered = match state
            .store
            .consented_scope(&session.user_id, &client.client_id)
            .await
        {
            Ok(scope) => scope.is_some_and(|granted| {
                request
                    .scopes
                    .iter()
                    .all(|s| granted.split(' ').any(|g| g == s))
            }),
            Err(e) => {
                tracing::error!(error = %e, "consent lookup failed");
                return fail(E::ServerError, "try again later");
            }
        };
        match consent {
            Some(false) => return fail(E::AccessDenied, "the user denied access"),
            Some(true) => {
                if let Err(e) = state
                    .store
                    .save_consent(&session.user_id, &client.client_id, &request.scope(), now)
                    .await
                {
                    tracing::error!(error = %e, "saving consent failed");
                    return fail(E::ServerError, "try again later");
                }
                super::browser::audit(
                    state,
                    req,
                    crate::audit::Event::by_user(
                        crate::audit::EventType::ConsentGiven,
                        &session.user_id,
                    )
                    .client(&client.client_id)
                    .details(serde_json::json!({"scope": request.scope()})),
                )
                .await;
            }
            None if covered && !request.prompt.consent => {}
            None if request.prompt.none => {
                return fail(E::ConsentRequired, "the user must approve this application");
            }
            None => {
                let carried = carry(params.clone());
                return Ok(consent_page(state, req, &carried, &client, &session, &request).await);
            }
        }
    }

    Ok(issue_code(state, &client, &request, &session, now).await)
}

async fn hint_subject(state: &AppState, hint: &str, client_id: &str, now: i64) -> Option<String> {
    let ring = state.keys.keyring(now).await.ok()?;
    let opts = latchkey_jwks::VerifyOptions {
        algs: &latchkey_jwks::Alg::ALL,
        issuer: &state.config.issuer,
        audience: client_id,
        typ: None,
        now,
        // An expired hint still says who the client thinks is signed in.
        leeway: i64::MAX / 4,
    };
    let claims = ring.verify(hint, &opts).ok()?;
    claims.str("sub").map(str::to_owned)
}

async fn issue_code(
    state: &AppState,
    client: &Client,
    request: &AuthzRequest,
    session: &Session,
    now: i64,
) -> Response {
    let code = AuthorizationCode::generate();
    let row = CodeRow {
        grant_id: random_token(16),
        client_id: client.client_id.clone(),
        redirect_uri: request.redirect.uri().to_owned(),
        scope: request.scope(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        claims: request.claims.clone(),
        dpop_jkt: request.dpop_jkt.clone(),
        resource: request.resource.clone(),
        authn: Authn {
            user_id: session.user_id.clone(),
            sid: Some(session.sid.clone()),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            acr: session.acr.clone(),
        },
        // FAPI 2.0 §5.3.2.1: a code lives at most 60 seconds.
        expires_at: now
            + if client.is_fapi2() {
                secs(state.config.tokens.code_lifetime).min(60)
            } else {
                secs(state.config.tokens.code_lifetime)
            },
    };
    let digest = state
        .pepper
        .digest(Purpose::AuthorizationCode, code.expose().as_bytes());
    if let Err(e) = state.store.insert_code(&digest, &row, now).await {
        tracing::error!(error = %e, "storing the code failed");
        return authorize_error(
            state,
            &request.redirect,
            &AuthorizeError::new(E::ServerError, "try again later"),
        );
    }
    authorize_success(state, &request.redirect, code.expose())
}

/// The sign-in form, carrying the authorization request. `prompt=login` is taken out of what
/// it carries: signing in here is what it asked for.
pub fn login_page(
    state: &AppState,
    req: &Request,
    params: &Params,
    client: &Client,
    error: Option<&str>,
    email: &str,
    status: StatusCode,
) -> Response {
    // Idempotent: a pushed request's parameters come here without it already, so their
    // mark still holds.
    let carried = without_prompt_login(params);
    let acr_values: Vec<String> = params
        .get("acr_values")
        .unwrap_or_default()
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let login_hint = params.get("login_hint").unwrap_or_default();
    let email = if email.is_empty() { login_hint } else { email };
    let (csrf, set_cookie) = csrf_token(state, req);
    let mut resp = page(
        state,
        status,
        "login.html",
        minijinja::context! {
            client_name => client.metadata.client_name,
            csrf_token => csrf,
            request => carried.encode(),
            error => error,
            email => email,
            passkey_only => wants_phishing_resistant(&acr_values),
            signup_open => state.config.signup.policy == crate::config::SignupPolicy::Open,
            email_links => state.config.signin.email_links,
        },
    );
    append_cookie(&mut resp, set_cookie);
    if let Ok(verified) = validate(params, Some(client)) {
        allow_form_redirect(&mut resp, verified.redirect.uri());
    }
    resp
}

async fn consent_page(
    state: &AppState,
    req: &Request,
    params: &Params,
    client: &Client,
    session: &Session,
    request: &AuthzRequest,
) -> Response {
    let email = match state.store.user_by_id(&session.user_id).await {
        Ok(Some(u)) => u.email,
        _ => String::new(),
    };
    let (csrf, set_cookie) = csrf_token(state, req);
    let m = &client.metadata;
    // Who the user is dealing with, as far as anything vouches for it: where the answer
    // goes, the host of a metadata document's URL, and where the logo lives.
    let host_of = |uri: &str| {
        url::Url::parse(uri)
            .ok()
            .and_then(|u| u.host_str().map(|h| (h.to_owned(), u.port())))
    };
    let redirect = host_of(request.redirect.uri());
    let redirect_loopback = redirect
        .as_ref()
        .is_some_and(|(h, _)| crate::config::is_loopback_host(h));
    let redirect_host = redirect.map(|(h, port)| match port {
        Some(p) => format!("{h}:{p}"),
        None => h,
    });
    let client_host = (client.origin == crate::oauth::client::ClientOrigin::Document)
        .then(|| host_of(&client.client_id).map(|(h, _)| h))
        .flatten();
    let logo_origin = m
        .logo_uri
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization());
    let mut resp = page(
        state,
        StatusCode::OK,
        "consent.html",
        minijinja::context! {
            client_name => m.client_name,
            logo_uri => m.logo_uri,
            policy_uri => m.policy_uri,
            tos_uri => m.tos_uri,
            unverified => client.is_unverified(),
            client_host => client_host,
            redirect_host => redirect_host,
            redirect_loopback => redirect_loopback,
            logo_origin => logo_origin,
            user_email => email,
            scopes => request.scopes,
            csrf_token => csrf,
            request => params.encode(),
        },
    );
    append_cookie(&mut resp, set_cookie);
    allow_form_redirect(&mut resp, request.redirect.uri());
    resp
}
