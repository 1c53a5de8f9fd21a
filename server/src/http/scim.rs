//! SCIM 2.0 provisioning at `/scim/v2/` (RFC 7643 resources, RFC 7644 protocol) for identity
//! providers that manage accounts here (Okta, Entra ID, JumpCloud, ...): `Users` (create, get,
//! list with `filter=userName eq "..."` or `externalId eq "..."`, replace, patch, delete),
//! `Groups` with members (a `groups` claim for clients given the `groups` scope),
//! `ServiceProviderConfig`, `Schemas` and `ResourceTypes`. Authentication: a bearer credential
//! from `latchkey scim-token create` (stored as a digest). Errors in SCIM's format. A user set
//! `active: false` is disabled exactly as `latchkey user disable` does it; a deleted one is
//! deleted as an administrator would (`admin::delete_user`). Every change is an audit event
//! whose actor is `scim:<credential name>`.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use crate::admin::AdminError;
use crate::audit::{Actor, Event, EventType, Origin};
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::{ScimGroup, StoreError, User};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const MAX_COUNT: i64 = 200;

/// A SCIM error (RFC 7644 §3.12).
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "no such resource")
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) => Self::new(StatusCode::CONFLICT, Some("uniqueness"), why),
            other => {
                tracing::error!(error = %other, "a SCIM request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "server error")
            }
        }
    }
}

impl From<AdminError> for ScimError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound => Self::not_found(),
            AdminError::Invalid(why) => Self::new(StatusCode::CONFLICT, Some("mutability"), why),
            AdminError::Store(e) => e.into(),
            AdminError::Keys(e) => {
                tracing::error!(error = %e, "a SCIM request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "server error")
            }
        }
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/scim+json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.to_string())
}

impl poem::error::ResponseError for ScimError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut resp = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"latchkey-scim\""),
            );
        }
        resp
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::fmt::Debug for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ScimError {}

/// The provisioning client: the name of its credential, and where the request came from.
struct Provisioner {
    name: String,
    seen: super::browser::Seen,
}

impl Provisioner {
    fn actor(&self) -> Actor<'_> {
        Actor::Provisioning(&self.name)
    }

    fn origin(&self) -> Origin<'_> {
        self.seen.origin()
    }

    async fn record(&self, state: &AppState, e: Event<'_>) {
        state
            .audit
            .note(state.clock.now(), e.from(self.origin()))
            .await;
    }
}

async fn provisioner(state: &AppState, req: &Request) -> Result<Provisioner, ScimError> {
    let unauthorized = || {
        ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a SCIM bearer credential (latchkey scim-token create) is required",
        )
    };
    super::client_auth::gate_closed(req, state)
        .await
        .map_err(|_| {
            ScimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many failures; wait",
            )
        })?;
    let token = req
        .header(header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(unauthorized)?;
    let digests = state
        .pepper
        .lookup_digests(crate::secrets::Purpose::ScimToken, token.as_bytes());
    let name = state
        .store
        .scim_token_name(&digests, state.clock.now())
        .await?;
    let Some(name) = name else {
        super::client_auth::count_gate_failure(req, state).await;
        return Err(unauthorized());
    };
    Ok(Provisioner {
        name,
        seen: super::browser::Seen::of(state, req),
    })
}

async fn body_json(req: &Request, body: poem::Body) -> Result<Value, ScimError> {
    let ok = req.content_type().is_some_and(|c| {
        c.starts_with("application/scim+json") || c.starts_with("application/json")
    });
    if !ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be application/scim+json",
        ));
    }
    let bytes = body
        .into_vec()
        .await
        .map_err(|_| ScimError::bad("invalidSyntax", "the body could not be read"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ScimError::bad("invalidSyntax", "the body is not JSON"))?;
    if crate::input::json_has_nul(&v) || !v.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

fn iso(t: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.issuer)
}

fn user_resource(state: &AppState, u: &User, external_id: Option<&str>) -> Value {
    let mut v = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.email,
        "active": u.disabled_at.is_none(),
        "emails": [{"value": u.email, "primary": true, "type": "work"}],
        "meta": {
            "resourceType": "User",
            "created": iso(u.created_at),
            "location": format!("{}/Users/{}", base(state), u.id),
        },
    });
    if let Some(name) = &u.name {
        v["displayName"] = json!(name);
        v["name"] = json!({ "formatted": name });
    }
    if let Some(x) = external_id {
        v["externalId"] = json!(x);
    }
    v
}

fn group_resource(state: &AppState, g: &ScimGroup) -> Value {
    let mut v = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id,
        "displayName": g.display_name,
        "members": g.members.iter().map(|m| json!({
            "value": m,
            "$ref": format!("{}/Users/{m}", base(state)),
            "type": "User",
        })).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Group",
            "created": iso(g.created_at),
            "lastModified": iso(g.updated_at),
            "location": format!("{}/Groups/{}", base(state), g.id),
        },
    });
    if let Some(x) = &g.external_id {
        v["externalId"] = json!(x);
    }
    v
}

/// `attr eq "value"` (RFC 7644 §3.4.2.2), the forms provisioning clients send to find a
/// resource; the attribute in lower case, the value unescaped.
fn parse_filter(filter: &str) -> Result<(String, String), ScimError> {
    let invalid = || {
        ScimError::bad(
            "invalidFilter",
            "only filters of the form attribute eq \"value\" are supported",
        )
    };
    let f = filter.trim();
    let (attr, rest) = f.split_once(char::is_whitespace).ok_or_else(invalid)?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(invalid)?;
    let unescaped =
        serde_json::from_str::<String>(&format!("\"{inner}\"")).map_err(|_| invalid())?;
    Ok((attr.to_ascii_lowercase(), unescaped))
}

/// `startIndex` (1-based) and `count` of a list request.
fn paging(q: &Params) -> Result<(i64, i64), ScimError> {
    let num = |k: &str, default: i64| match q.get(k) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ScimError::bad("invalidValue", format!("{k} must be a number"))),
    };
    let start = num("startIndex", 1)?.max(1);
    let count = num("count", 100)?.clamp(0, MAX_COUNT);
    Ok((start, count))
}

fn list(resources: Vec<Value>, total: i64, start: i64) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

fn query(req: &Request) -> Result<Params, ScimError> {
    Params::parse(req.uri().query().unwrap_or_default().as_bytes())
        .map_err(|_| ScimError::bad("invalidSyntax", "the query could not be read"))
}

/// What a User resource sets: address, name, external id, active.
struct UserFields {
    email: String,
    name: Option<String>,
    external_id: Option<String>,
    active: Option<bool>,
}

/// A SCIM boolean: JSON `true`/`false`, or the strings some clients send (`"False"`).
fn scim_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn user_fields(v: &Value) -> Result<UserFields, ScimError> {
    let primary_email = v["emails"].as_array().and_then(|list| {
        list.iter()
            .find(|e| e["primary"] == true)
            .or_else(|| list.first())
            .and_then(|e| e["value"].as_str())
    });
    let user_name = v["userName"].as_str().filter(|u| !u.trim().is_empty());
    // Accounts here are known by their address: userName is it (or, without a userName, the
    // primary email). A userName that is no address is refused rather than swapped for
    // another value, which the identity provider would then not find again.
    let email = match user_name.or(primary_email) {
        Some(e) => crate::input::validate_email(e).map_err(|_| {
            ScimError::bad(
                "invalidValue",
                "userName must be an email address: accounts here are known by it",
            )
        })?,
        None => return Err(ScimError::bad("invalidValue", "userName is required")),
    };
    let given = v["name"]["givenName"].as_str();
    let family = v["name"]["familyName"].as_str();
    let name = v["displayName"]
        .as_str()
        .or(v["name"]["formatted"].as_str())
        .map(str::to_owned)
        .or_else(|| match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(n), None) | (None, Some(n)) => Some(n.to_owned()),
            _ => None,
        })
        .map(|n| n.trim().chars().take(200).collect::<String>())
        .filter(|n| !n.is_empty());
    let external_id = v["externalId"]
        .as_str()
        .map(|x| x.chars().take(256).collect::<String>());
    let active = match v.get("active") {
        None | Some(Value::Null) => None,
        Some(a) => Some(
            scim_bool(a)
                .ok_or_else(|| ScimError::bad("invalidValue", "active must be a boolean"))?,
        ),
    };
    Ok(UserFields {
        email,
        name,
        external_id,
        active,
    })
}

/// A user SCIM may see and change: never an administrator (a provisioning credential must
/// not be able to take over an admin account by changing its address), 404 as for none.
async fn load_user(state: &AppState, id: &str) -> Result<(User, Option<String>), ScimError> {
    let user = state
        .store
        .user_by_id(id)
        .await?
        .filter(|u| !u.is_admin && u.service_owner.is_none())
        .ok_or_else(ScimError::not_found)?;
    let external = state.store.external_id(id).await?;
    Ok((user, external))
}

/// Disables or enables the user when `active` says so and it differs (the last enabled
/// administrator stays: 409 mutability).
async fn apply_active(
    state: &AppState,
    who: &Provisioner,
    user: &User,
    active: Option<bool>,
) -> Result<(), ScimError> {
    let Some(active) = active else {
        return Ok(());
    };
    if active == user.disabled_at.is_none() {
        return Ok(());
    }
    state
        .admin(who.actor(), who.origin())
        .set_disabled(&user.id, !active)
        .await?;
    Ok(())
}

async fn save_user_fields(
    state: &AppState,
    who: &Provisioner,
    user: &User,
    f: &UserFields,
) -> Result<(), ScimError> {
    state
        .store
        .scim_update_user(
            &user.id,
            &f.email,
            f.name.as_deref(),
            f.external_id.as_deref(),
            state.clock.now(),
        )
        .await?;
    who.record(
        state,
        Event::new(EventType::UserUpdated, who.actor())
            .subject(&user.id)
            .details(json!({ "through": "scim" })),
    )
    .await;
    apply_active(state, who, user, f.active).await
}

// ---- discovery ----

#[handler]
pub async fn service_provider_config(Data(state): Data<&AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/", state.config.issuer),
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_COUNT},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer credential",
                "description": "A credential from latchkey scim-token create, as Authorization: Bearer",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", base(state))},
        }),
    )
}

fn resource_types(state: &AppState) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "schema": USER_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/User", base(state))},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/Group", base(state))},
        }),
    ]
}

#[handler]
pub async fn resource_types_list(Data(state): Data<&AppState>) -> Response {
    list(resource_types(state), 2, 1)
}

fn attribute(name: &str, ty: &str, required: bool, mutability: &str, uniqueness: &str) -> Value {
    json!({
        "name": name, "type": ty, "multiValued": false, "required": required,
        "caseExact": false, "mutability": mutability, "returned": "default",
        "uniqueness": uniqueness,
    })
}

fn schemas(state: &AppState) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": USER_SCHEMA, "name": "User", "description": "A Latchkey account, known by its email address",
            "attributes": [
                attribute("userName", "string", true, "readWrite", "server"),
                attribute("displayName", "string", false, "readWrite", "none"),
                attribute("active", "boolean", false, "readWrite", "none"),
                attribute("externalId", "string", false, "readWrite", "none"),
                {
                    "name": "name", "type": "complex", "multiValued": false, "required": false,
                    "mutability": "readWrite", "returned": "default",
                    "subAttributes": [
                        attribute("formatted", "string", false, "readWrite", "none"),
                        attribute("givenName", "string", false, "writeOnly", "none"),
                        attribute("familyName", "string", false, "writeOnly", "none"),
                    ],
                },
                {
                    "name": "emails", "type": "complex", "multiValued": true, "required": false,
                    "mutability": "readWrite", "returned": "default",
                    "subAttributes": [
                        attribute("value", "string", false, "readWrite", "none"),
                        attribute("primary", "boolean", false, "readWrite", "none"),
                    ],
                },
            ],
            "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{USER_SCHEMA}", base(state))},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": GROUP_SCHEMA, "name": "Group", "description": "A group, released in the groups claim",
            "attributes": [
                attribute("displayName", "string", true, "readWrite", "server"),
                attribute("externalId", "string", false, "readWrite", "none"),
                {
                    "name": "members", "type": "complex", "multiValued": true, "required": false,
                    "mutability": "readWrite", "returned": "default",
                    "subAttributes": [attribute("value", "string", false, "immutable", "none")],
                },
            ],
            "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{GROUP_SCHEMA}", base(state))},
        }),
    ]
}

#[handler]
pub async fn schemas_list(Data(state): Data<&AppState>) -> Response {
    list(schemas(state), 2, 1)
}

// ---- users ----

#[handler]
pub async fn list_users(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    provisioner(state, req).await?;
    let q = query(req)?;
    let (start, count) = paging(&q)?;
    let (mut email, mut external) = (None, None);
    if let Some(f) = q.get("filter") {
        let (attr, value) = parse_filter(f)?;
        if value.is_empty() {
            return Ok(list(Vec::new(), 0, start));
        }
        match attr.as_str() {
            "username" | "emails.value" | "emails" => email = Some(value),
            "externalid" => external = Some(value),
            _ => {
                return Err(ScimError::bad(
                    "invalidFilter",
                    "Users can be filtered by userName or externalId",
                ));
            }
        }
    }
    let (total, users) = state
        .store
        .scim_users(email.as_deref(), external.as_deref(), start - 1, count)
        .await?;
    let resources = users
        .iter()
        .map(|(u, x)| user_resource(state, u, x.as_deref()))
        .collect();
    Ok(list(resources, total, start))
}

#[handler]
pub async fn create_user(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    let f = user_fields(&v)?;
    let id = crate::secrets::random_token(16);
    let now = state.clock.now();
    state
        .store
        .create_user(&crate::store::NewUser {
            id: &id,
            email: &f.email,
            // The identity provider vouches for the address it manages.
            email_verified: true,
            name: f.name.as_deref(),
            password_hash: None,
            is_admin: false,
            now,
        })
        .await?;
    let (user, _) = load_user(state, &id).await?;
    state
        .store
        .scim_update_user(
            &id,
            &f.email,
            f.name.as_deref(),
            f.external_id.as_deref(),
            now,
        )
        .await?;
    who.record(
        state,
        Event::new(EventType::UserCreated, who.actor())
            .subject(&id)
            .details(json!({ "through": "scim" })),
    )
    .await;
    apply_active(state, &who, &user, f.active).await?;
    let (user, external) = load_user(state, &id).await?;
    let mut resp = scim_json(
        StatusCode::CREATED,
        &user_resource(state, &user, external.as_deref()),
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("{}/Users/{id}", base(state))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[handler]
pub async fn get_user(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    provisioner(state, req).await?;
    let (user, external) = load_user(state, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &user_resource(state, &user, external.as_deref()),
    ))
}

#[handler]
pub async fn replace_user(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    let (user, _) = load_user(state, &id).await?;
    let f = user_fields(&v)?;
    save_user_fields(state, &who, &user, &f).await?;
    let (user, external) = load_user(state, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &user_resource(state, &user, external.as_deref()),
    ))
}

/// RFC 7644 §3.5.2: `add` and `replace` of `active`, `userName`, `displayName`,
/// `name.formatted`, `externalId` (with a path, or as members of a value object without one).
#[handler]
pub async fn patch_user(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    if !v["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == PATCH_SCHEMA))
    {
        return Err(ScimError::bad(
            "invalidSyntax",
            "a PatchOp request is expected",
        ));
    }
    let (user, external) = load_user(state, &id).await?;
    // The resource as it is, changed by each operation, then saved as a replace would.
    let mut current = user_resource(state, &user, external.as_deref());
    let ops = v["Operations"]
        .as_array()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a list"))?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default().to_ascii_lowercase();
        if !matches!(kind.as_str(), "add" | "replace" | "remove") {
            return Err(ScimError::bad(
                "invalidValue",
                "op must be add, replace or remove",
            ));
        }
        let value = if kind == "remove" {
            &Value::Null
        } else {
            &op["value"]
        };
        match op["path"].as_str() {
            None => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| ScimError::bad("invalidValue", "value must be an object"))?;
                for (k, v) in obj {
                    set_user_path(&mut current, k, v)?;
                }
            }
            Some(path) => set_user_path(&mut current, path, value)?,
        }
    }
    let f = user_fields(&current)?;
    save_user_fields(state, &who, &user, &f).await?;
    let (user, external) = load_user(state, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &user_resource(state, &user, external.as_deref()),
    ))
}

/// One PATCH path set to `value` (null: removed). Attributes Latchkey does not keep (title,
/// department, the enterprise extension, phone numbers, ...) are accepted and dropped, as
/// identity providers send them in the same request as the ones that matter (`active`).
fn set_user_path(current: &mut Value, path: &str, value: &Value) -> Result<(), ScimError> {
    let lower = path.to_ascii_lowercase();
    match lower.as_str() {
        "active" => {
            if value.is_null() {
                return Err(ScimError::bad("mutability", "active cannot be removed"));
            }
            current["active"] = value.clone();
        }
        "username" => {
            if value.is_null() {
                return Err(ScimError::bad("mutability", "userName cannot be removed"));
            }
            current["userName"] = value.clone();
        }
        "displayname" | "name.formatted" => {
            current["displayName"] = value.clone();
            current["name"] = Value::Null;
        }
        "name" => {
            current["displayName"] = Value::Null;
            current["name"] = value.clone();
        }
        "name.givenname" | "name.familyname" => {
            // A new given or family name: the name is made of them when no display name
            // comes with it.
            let key = if lower.ends_with("givenname") {
                "givenName"
            } else {
                "familyName"
            };
            if !current["name"].is_object() {
                current["name"] = json!({});
            }
            current["name"][key] = value.clone();
            current["displayName"] = Value::Null;
            current["name"]["formatted"] = Value::Null;
        }
        "externalid" => current["externalId"] = value.clone(),
        p if p == "emails" || (p.starts_with("emails[") && p.ends_with("].value")) => {
            let address = if p == "emails" {
                value.as_array().and_then(|list| {
                    list.iter()
                        .find(|e| e["primary"] == true)
                        .or_else(|| list.first())
                        .and_then(|e| e["value"].as_str())
                        .map(str::to_owned)
                })
            } else {
                value.as_str().map(str::to_owned)
            };
            // The address is the userName here: a new primary address renames the account.
            if let Some(a) = address {
                current["userName"] = json!(a);
            }
        }
        _ => {}
    }
    Ok(())
}

#[handler]
pub async fn delete_user(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    load_user(state, &id).await?;
    state
        .admin(who.actor(), who.origin())
        .delete_user(&id)
        .await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

// ---- groups ----

fn member_ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|list| {
            list.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn display_name(v: &Value) -> Result<String, ScimError> {
    v["displayName"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 200)
        .map(str::to_owned)
        .ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                "displayName is required (1 to 200 characters)",
            )
        })
}

async fn load_group(state: &AppState, id: &str) -> Result<ScimGroup, ScimError> {
    let (_, mut groups) = state.store.scim_groups(None, Some(id), 0, 1).await?;
    groups.pop().ok_or_else(ScimError::not_found)
}

#[handler]
pub async fn list_groups(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    provisioner(state, req).await?;
    let q = query(req)?;
    let (start, count) = paging(&q)?;
    let name = match q.get("filter") {
        None => None,
        Some(f) => match parse_filter(f)? {
            (attr, value) if attr == "displayname" && value.is_empty() => {
                return Ok(list(Vec::new(), 0, start));
            }
            (attr, value) if attr == "displayname" => Some(value),
            _ => {
                return Err(ScimError::bad(
                    "invalidFilter",
                    "Groups can be filtered by displayName",
                ));
            }
        },
    };
    let (total, groups) = state
        .store
        .scim_groups(name.as_deref(), None, start - 1, count)
        .await?;
    Ok(list(
        groups.iter().map(|g| group_resource(state, g)).collect(),
        total,
        start,
    ))
}

#[handler]
pub async fn create_group(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    let name = display_name(&v)?;
    let id = crate::secrets::random_token(16);
    state
        .store
        .create_group(
            &id,
            &name,
            v["externalId"].as_str(),
            &member_ids(&v["members"]),
            state.clock.now(),
        )
        .await?;
    who.record(
        state,
        Event::new(EventType::GroupChanged, who.actor())
            .details(json!({ "group": id, "change": "created" })),
    )
    .await;
    let g = load_group(state, &id).await?;
    let mut resp = scim_json(StatusCode::CREATED, &group_resource(state, &g));
    if let Ok(v) = header::HeaderValue::from_str(&format!("{}/Groups/{id}", base(state))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[handler]
pub async fn get_group(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    provisioner(state, req).await?;
    let g = load_group(state, &id).await?;
    Ok(scim_json(StatusCode::OK, &group_resource(state, &g)))
}

#[handler]
pub async fn replace_group(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    let name = display_name(&v)?;
    if !state
        .store
        .replace_group(
            &id,
            &name,
            v["externalId"].as_str(),
            &member_ids(&v["members"]),
            state.clock.now(),
        )
        .await?
    {
        return Err(ScimError::not_found());
    }
    who.record(
        state,
        Event::new(EventType::GroupChanged, who.actor())
            .details(json!({ "group": id, "change": "replaced" })),
    )
    .await;
    let g = load_group(state, &id).await?;
    Ok(scim_json(StatusCode::OK, &group_resource(state, &g)))
}

/// `add`/`remove` of `members` (remove also as `members[value eq "id"]`), `replace` of
/// `displayName` or of `members`.
#[handler]
pub async fn patch_group(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    let v = body_json(req, body).await?;
    let g = load_group(state, &id).await?;
    let ops = v["Operations"]
        .as_array()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a list"))?;
    // Adds and removes change only the members named (two identity-provider requests at once
    // do not undo each other); a replace of the list or of the name rewrites the group.
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    let (mut new_name, mut new_members): (Option<String>, Option<Vec<String>>) = (None, None);
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default().to_ascii_lowercase();
        let path = op["path"].as_str().unwrap_or_default();
        let lower = path.to_ascii_lowercase();
        match (kind.as_str(), lower.as_str()) {
            ("add", "members") => add.extend(member_ids(&op["value"])),
            ("remove", "members") if op["value"].is_null() => new_members = Some(Vec::new()),
            ("remove", "members") => remove.extend(member_ids(&op["value"])),
            ("remove", p) if p.starts_with("members[") => {
                let (_, value) = parse_filter(
                    path.trim_start_matches(|c| c != '[')
                        .trim_start_matches('[')
                        .trim_end_matches(']'),
                )?;
                remove.push(value);
            }
            ("replace", "members") => new_members = Some(member_ids(&op["value"])),
            ("replace", "displayname") => {
                new_name = Some(display_name(&json!({ "displayName": op["value"] }))?);
            }
            ("replace", "") | ("add", "") => {
                if let Some(n) = op["value"].get("displayName") {
                    new_name = Some(display_name(&json!({ "displayName": n }))?);
                }
                if let Some(m) = op["value"].get("members") {
                    if kind == "add" {
                        add.extend(member_ids(m));
                    } else {
                        new_members = Some(member_ids(m));
                    }
                }
            }
            _ => {
                return Err(ScimError::bad(
                    "invalidValue",
                    "Groups take add/remove/replace of members and replace of displayName",
                ));
            }
        }
    }
    let now = state.clock.now();
    if new_name.is_some() || new_members.is_some() {
        let members = new_members.clone().unwrap_or_else(|| g.members.clone());
        state
            .store
            .replace_group(
                &id,
                new_name.as_deref().unwrap_or(&g.display_name),
                g.external_id.as_deref(),
                &members,
                now,
            )
            .await?;
    }
    if !add.is_empty() || !remove.is_empty() {
        state.store.change_members(&id, &add, &remove, now).await?;
    }
    who.record(
        state,
        Event::new(EventType::GroupChanged, who.actor()).details(json!({
            "group": id,
            "change": "patched",
            "added": add,
            "removed": remove,
            "renamed": new_name.is_some(),
            "members_replaced": new_members.is_some(),
        })),
    )
    .await;
    let g = load_group(state, &id).await?;
    Ok(scim_json(StatusCode::OK, &group_resource(state, &g)))
}

#[handler]
pub async fn delete_group(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ScimError> {
    let who = provisioner(state, req).await?;
    if !state.store.delete_group(&id).await? {
        return Err(ScimError::not_found());
    }
    who.record(
        state,
        Event::new(EventType::GroupChanged, who.actor())
            .details(json!({ "group": id, "change": "deleted" })),
    )
    .await;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7644_filters_of_the_eq_form_parse() {
        assert_eq!(
            parse_filter(r#"userName eq "ada@example.com""#)
                .ok()
                .map(|f| f.0),
            Some("username".to_owned())
        );
        assert_eq!(
            parse_filter(r#"externalId eq "a\"b""#).ok().map(|f| f.1),
            Some("a\"b".to_owned())
        );
        for bad in [
            r#"userName co "a""#,
            "userName eq a",
            "",
            r#"userName eq "a" and x eq "b""#,
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scim_booleans_take_the_strings_some_clients_send() {
        assert_eq!(scim_bool(&json!("False")), Some(false));
        assert_eq!(scim_bool(&json!(true)), Some(true));
        assert_eq!(scim_bool(&json!(0)), None);
    }
}
