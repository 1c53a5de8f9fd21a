//! The only module that knows poem: routes, the cross-cutting middleware (body limit,
//! security headers, logs and metrics) and one file per endpoint.

mod account;
mod admin_api;
mod admin_console;
mod api;
mod assets;
mod authorize;
mod bearer;
mod browser;
mod client_auth;
mod device;
mod discovery;
mod dpop;
mod email;
mod error;
mod forward_auth;
mod health;
mod jwks;
mod links;
mod login;
mod logout;
mod metrics;
mod middleware;
mod pages;
mod par;
mod passkeys;
mod password;
mod register;
mod reset;
mod respond;
mod revoke;
mod scim;
mod signin_link;
mod signup;
mod streams_api;
mod token;
mod totp;
mod userinfo;

use poem::{Endpoint, EndpointExt, Route, delete, get, post};

use crate::state::AppState;

/// The whole application, ready to serve. Tests mount this on port 0. Each route's pattern
/// is its name in metrics (see `middleware::observe`).
pub fn app(state: AppState) -> impl Endpoint + 'static {
    let max_body = state.config.http.max_body_bytes;
    let hsts = state.config.issuer_is_https();
    let metrics = state.metrics.clone();
    let views = state.views.clone();
    Route::new()
        .at(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .at(
            "/.well-known/oauth-authorization-server",
            get(discovery::oauth_authorization_server),
        )
        .at(
            "/.well-known/oauth-authorization-server/*path",
            get(discovery::path_inserted),
        )
        .at(
            "/.well-known/openid-configuration/*path",
            get(discovery::path_inserted),
        )
        .at(
            "/.well-known/oauth-protected-resource/*path",
            get(discovery::protected_resource),
        )
        .at("/jwks.json", get(jwks::jwks))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(metrics::metrics))
        .at(
            "/authorize",
            get(authorize::authorize).post(authorize::authorize),
        )
        .at("/token", post(token::token_endpoint))
        .at("/par", post(par::push))
        .at(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .at("/revoke", post(revoke::revoke))
        .at("/introspect", post(revoke::introspect))
        .at("/logout", get(logout::logout).post(logout::logout))
        .at("/login", get(login::login_form).post(login::login))
        .at("/forward-auth", get(forward_auth::check))
        .at("/consent", post(login::consent))
        .at("/register", post(register::register))
        .at(
            "/register/:client_id",
            get(register::read)
                .put(register::update)
                .delete(register::delete),
        )
        .at("/login/passkey/options", post(passkeys::signin_options))
        .at("/login/passkey", post(passkeys::signin))
        .at("/account", get(account::account))
        .at("/signup", get(signup::signup_form).post(signup::signup))
        .at("/signup/options", post(signup::signup_options))
        .at("/account/signout", post(account::sign_out))
        .at(
            "/account/passkeys/options",
            post(passkeys::register_options),
        )
        .at("/account/passkeys", post(passkeys::register))
        .at("/account/passkeys/:id/rename", post(passkeys::rename))
        .at("/account/passkeys/:id/delete", post(passkeys::delete))
        .at(
            "/account/sessions/revoke-all",
            post(account::revoke_all_sessions),
        )
        .at(
            "/account/sessions/:sid/revoke",
            post(account::revoke_session),
        )
        .at("/account/apps/:client_id/revoke", post(account::revoke_app))
        .at("/account/devices/:id/remove", post(account::remove_device))
        .at("/account/password", post(password::change))
        .at("/account/delete", post(account::delete_account))
        .at("/account/api-keys", post(account::create_api_key))
        .at(
            "/account/api-keys/:id/revoke",
            post(account::revoke_api_key),
        )
        .at(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .at("/scim/v2/ResourceTypes", get(scim::resource_types_list))
        .at("/scim/v2/Schemas", get(scim::schemas_list))
        .at(
            "/scim/v2/Users",
            get(scim::list_users).post(scim::create_user),
        )
        .at(
            "/scim/v2/Users/:id",
            get(scim::get_user)
                .put(scim::replace_user)
                .patch(scim::patch_user)
                .delete(scim::delete_user),
        )
        .at(
            "/scim/v2/Groups",
            get(scim::list_groups).post(scim::create_group),
        )
        .at(
            "/scim/v2/Groups/:id",
            get(scim::get_group)
                .put(scim::replace_group)
                .patch(scim::patch_group)
                .delete(scim::delete_group),
        )
        .at("/admin", get(admin_console::home))
        .at("/admin/users", get(admin_console::users_page))
        .at("/admin/users/:id", get(admin_console::user_page))
        .at(
            "/admin/users/:id/sessions/revoke",
            post(admin_console::end_sessions),
        )
        .at(
            "/admin/users/:id/disable",
            post(admin_console::disable_user),
        )
        .at("/admin/users/:id/enable", post(admin_console::enable_user))
        .at(
            "/admin/users/:id/api-keys/:key/revoke",
            post(admin_console::revoke_api_key),
        )
        .at(
            "/admin/users/:id/delete",
            post(admin_console::delete_user_form),
        )
        .at("/admin/sessions", get(admin_console::sessions_page))
        .at("/admin/sessions/:sid/end", post(admin_console::end_session))
        .at("/admin/clients", get(admin_console::clients_page))
        .at("/admin/clients/:id", get(admin_console::client_page))
        .at(
            "/admin/clients/:id/rotate-secret",
            post(admin_console::rotate_secret_form),
        )
        .at("/admin/keys", get(admin_console::keys_page))
        .at("/admin/keys/rotate", post(admin_console::rotate_keys_form))
        .at("/admin/audit", get(admin_console::audit_page))
        .at("/account/email", post(email::change))
        .at(
            "/email/confirm",
            get(email::confirm_form).post(email::confirm),
        )
        .at("/signup/email", post(signup::signup_email))
        .at("/reset", get(reset::reset_form).post(reset::reset_request))
        .at(
            "/reset/confirm",
            get(reset::confirm_form).post(reset::confirm),
        )
        .at("/account/totp/setup", post(totp::setup))
        .at("/account/totp/confirm", post(totp::confirm))
        .at("/account/totp/disable", post(totp::disable))
        .at("/account/recovery-codes", post(totp::regenerate_codes))
        .at("/login/second-factor", post(totp::second_factor))
        .at(
            "/api/streams",
            get(streams_api::list).post(streams_api::create),
        )
        .at(
            "/api/streams/:id",
            get(streams_api::get_one)
                .put(streams_api::replace)
                .delete(streams_api::delete),
        )
        .at("/api/streams/:id/reveal", post(streams_api::reveal))
        .at(
            "/api/internal/users/:id/streams",
            get(streams_api::internal_list),
        )
        .at("/api/openapi.json", get(api::openapi))
        .at(
            "/admin/api/users",
            get(admin_api::list_users).post(admin_api::create_user),
        )
        .at(
            "/admin/api/users/:id",
            get(admin_api::show_user)
                .patch(admin_api::update_user)
                .delete(admin_api::delete_user),
        )
        .at(
            "/admin/api/users/:id/sessions/revoke",
            post(admin_api::end_user_sessions),
        )
        .at(
            "/admin/api/users/:id/second-factor/reset",
            post(admin_api::reset_second_factor),
        )
        .at(
            "/admin/api/users/:id/password-reset",
            post(admin_api::send_reset),
        )
        .at(
            "/admin/api/clients",
            get(admin_api::list_clients).post(admin_api::create_client),
        )
        .at(
            "/admin/api/clients/:id",
            get(admin_api::show_client)
                .patch(admin_api::update_client)
                .delete(admin_api::delete_client),
        )
        .at(
            "/admin/api/clients/:id/rotate-secret",
            post(admin_api::rotate_secret),
        )
        .at(
            "/admin/api/users/:id/api-keys",
            get(admin_api::list_api_keys).post(admin_api::create_api_key),
        )
        .at(
            "/admin/api/users/:id/api-keys/:key",
            delete(admin_api::revoke_api_key),
        )
        .at(
            "/admin/api/service-accounts",
            post(admin_api::create_service_account),
        )
        .at("/admin/api/keys", get(admin_api::list_keys))
        .at("/admin/api/keys/rotate", post(admin_api::rotate_keys))
        .at(
            "/admin/api/registration-tokens",
            post(admin_api::create_registration_token),
        )
        .at("/admin/api/invitations", post(admin_api::create_invitation))
        .at("/admin/api/sessions", get(admin_api::list_sessions))
        .at(
            "/admin/api/sessions/:sid",
            poem::delete(admin_api::end_session),
        )
        .at("/admin/api/audit-events", get(admin_api::list_audit_events))
        .at("/api/devices", get(api::list_devices))
        .at(
            "/api/devices/:id",
            poem::patch(api::rename_device).delete(api::delete_device),
        )
        .at("/device_authorization", post(device::device_authorization))
        .at(
            "/device",
            get(device::device_page).post(device::device_answer),
        )
        .at("/login/email", post(signin_link::request_link))
        .at(
            "/login/email/confirm",
            get(signin_link::confirm_form).post(signin_link::confirm),
        )
        .at("/static/:name", get(assets::asset))
        .data(state)
        .around({
            let views = views.clone();
            move |ep, req| error::render_page_errors(ep, req, views.clone())
        })
        .around(move |ep, req| middleware::limit_body(ep, req, max_body))
        .around(move |ep, req| middleware::refuse_bad_path(ep, req, views.clone()))
        .around(move |ep, req| middleware::security_headers(ep, req, hsts))
        .around(middleware::cors)
        .around(move |ep, req| middleware::observe(ep, req, metrics.clone()))
}
