//! Migrations are embedded in the binary, one list per backend, numbered and forward-only.
//! A unit test checks that each list matches the files under `migrations/`.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "oidc_core",
        include_str!("../../../migrations/sqlite/0002_oidc_core.sql"),
    ),
    (
        3,
        "registration",
        include_str!("../../../migrations/sqlite/0003_registration.sql"),
    ),
    (
        4,
        "client_assertions",
        include_str!("../../../migrations/sqlite/0004_client_assertions.sql"),
    ),
    (
        5,
        "throttles",
        include_str!("../../../migrations/sqlite/0005_throttles.sql"),
    ),
    (
        6,
        "passkeys",
        include_str!("../../../migrations/sqlite/0006_passkeys.sql"),
    ),
    (
        7,
        "invites",
        include_str!("../../../migrations/sqlite/0007_invites.sql"),
    ),
    (
        8,
        "totp",
        include_str!("../../../migrations/sqlite/0008_totp.sql"),
    ),
    (
        9,
        "email_links",
        include_str!("../../../migrations/sqlite/0009_email_links.sql"),
    ),
    (
        10,
        "device_flow",
        include_str!("../../../migrations/sqlite/0010_device_flow.sql"),
    ),
    (
        11,
        "streams",
        include_str!("../../../migrations/sqlite/0011_streams.sql"),
    ),
    (
        12,
        "federated_identities",
        include_str!("../../../migrations/sqlite/0012_federated_identities.sql"),
    ),
    (
        13,
        "audit_act",
        include_str!("../../../migrations/sqlite/0013_audit_act.sql"),
    ),
    (
        14,
        "refresh_retry",
        include_str!("../../../migrations/sqlite/0014_refresh_retry.sql"),
    ),
    (
        15,
        "signin_link_browser",
        include_str!("../../../migrations/sqlite/0015_signin_link_browser.sql"),
    ),
    (
        16,
        "pushed_requests",
        include_str!("../../../migrations/sqlite/0016_pushed_requests.sql"),
    ),
    (
        17,
        "refresh_successor_index",
        include_str!("../../../migrations/sqlite/0017_refresh_successor_index.sql"),
    ),
    (
        18,
        "dpop_binding",
        include_str!("../../../migrations/sqlite/0018_dpop_binding.sql"),
    ),
    (
        19,
        "backchannel_logout",
        include_str!("../../../migrations/sqlite/0019_backchannel_logout.sql"),
    ),
];

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "oidc_core",
        include_str!("../../../migrations/postgres/0002_oidc_core.sql"),
    ),
    (
        3,
        "registration",
        include_str!("../../../migrations/postgres/0003_registration.sql"),
    ),
    (
        4,
        "client_assertions",
        include_str!("../../../migrations/postgres/0004_client_assertions.sql"),
    ),
    (
        5,
        "throttles",
        include_str!("../../../migrations/postgres/0005_throttles.sql"),
    ),
    (
        6,
        "passkeys",
        include_str!("../../../migrations/postgres/0006_passkeys.sql"),
    ),
    (
        7,
        "invites",
        include_str!("../../../migrations/postgres/0007_invites.sql"),
    ),
    (
        8,
        "totp",
        include_str!("../../../migrations/postgres/0008_totp.sql"),
    ),
    (
        9,
        "email_links",
        include_str!("../../../migrations/postgres/0009_email_links.sql"),
    ),
    (
        10,
        "device_flow",
        include_str!("../../../migrations/postgres/0010_device_flow.sql"),
    ),
    (
        11,
        "streams",
        include_str!("../../../migrations/postgres/0011_streams.sql"),
    ),
    (
        12,
        "federated_identities",
        include_str!("../../../migrations/postgres/0012_federated_identities.sql"),
    ),
    (
        13,
        "audit_act",
        include_str!("../../../migrations/postgres/0013_audit_act.sql"),
    ),
    (
        14,
        "refresh_retry",
        include_str!("../../../migrations/postgres/0014_refresh_retry.sql"),
    ),
    (
        15,
        "signin_link_browser",
        include_str!("../../../migrations/postgres/0015_signin_link_browser.sql"),
    ),
    (
        16,
        "pushed_requests",
        include_str!("../../../migrations/postgres/0016_pushed_requests.sql"),
    ),
    (
        17,
        "refresh_successor_index",
        include_str!("../../../migrations/postgres/0017_refresh_successor_index.sql"),
    ),
    (
        18,
        "dpop_binding",
        include_str!("../../../migrations/postgres/0018_dpop_binding.sql"),
    ),
    (
        19,
        "backchannel_logout",
        include_str!("../../../migrations/postgres/0019_backchannel_logout.sql"),
    ),
];

pub(super) fn list(backend: Backend) -> &'static [(i64, &'static str, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

pub(super) fn migrator(backend: Backend) -> Migrator {
    let migrations = list(backend)
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}
