//! Forward-auth for reverse proxies (issue 17 item 1). The "proxy" is this test, asking
//! `GET /forward-auth` from 127.0.0.1 (a trusted proxy) as nginx, Traefik and Caddy do; the
//! browser keeps its cookies by host, with `auth.example.test` (Latchkey) and the protected
//! hosts under `example.test` resolved to loopback. Then a real nginx (`auth_request`) in
//! front of a tiny upstream protects a page end to end.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use latchkey::testdb::TestDb;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};

use crate::flow::{PASSWORD, fixture, input_value, location};
use crate::harness::{Env, Killed, Server, free_port};

fn config(port: u16) -> String {
    config_with_cache(port, "0s")
}

fn config_with_cache(port: u16, cache_ttl: &str) -> String {
    format!(
        r#"issuer = "http://auth.example.test:{port}"
danger_allow_insecure_issuer = true
[http]
trusted_proxies = ["127.0.0.1"]
[forward_auth]
cookie_domain = "example.test"
cache_ttl = "{cache_ttl}"
[[forward_auth.rules]]
hosts = ["ops.example.test"]
allow_groups = ["ops"]
[[forward_auth.rules]]
hosts = ["secure.example.test"]
policy = "passkey"
[[forward_auth.rules]]
hosts = ["app.example.test", "*.apps.example.test"]
bypass = ["/public/"]
"#
    )
}

/// A browser that keeps cookies (in `jar`, by host) and resolves the test's names.
fn browser(jar: &Arc<reqwest::cookie::Jar>, hosts: &[(&str, u16)]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none());
    for (host, port) in hosts {
        b = b.resolve(host, SocketAddr::from(([127, 0, 0, 1], *port)));
    }
    b.build().unwrap()
}

/// What a proxy in front of `host` asks for a browser request to `uri` carrying `cookie`.
async fn check(
    server: &Server,
    host: &str,
    uri: &str,
    cookie: Option<&str>,
    mode: &str,
) -> reqwest::Response {
    let mut r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url(&format!("/forward-auth{mode}")))
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-for", "203.0.113.7");
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

/// The cookies the browser would send to `url`.
fn cookies_for(jar: &reqwest::cookie::Jar, url: &str) -> Option<String> {
    jar.cookies(&url.parse().unwrap())
        .map(|v| v.to_str().unwrap().to_owned())
}

fn header<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Signs in at Latchkey from the page `login_url` shows; returns where the browser goes next.
async fn sign_in_at(b: &reqwest::Client, issuer: &str, login_url: &str) -> reqwest::Response {
    let r = b.get(login_url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{login_url}");
    let html = r.text().await.unwrap();
    let csrf = input_value(&html, "csrf_token").unwrap();
    let request = input_value(&html, "request").unwrap_or_default();
    b.post(format!("{issuer}/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
}

/// Once reading the database on every check (the default), once with `cache_ttl = 5s`.
#[tokio::test]
async fn protected_hosts_sign_in_through_latchkey_and_get_identity_headers() {
    for cache in ["0s", "5s"] {
        for db in TestDb::all().await {
            protected_hosts(db, cache).await;
        }
    }
}

async fn protected_hosts(db: TestDb, cache: &str) {
    let cached = cache != "0s";
    {
        let port = free_port().await;
        let issuer = format!("http://auth.example.test:{port}");
        let env = Env::new(db, &config_with_cache(port, cache));
        let f = fixture(&env, &[]).await;
        let server = Server::start_at(env.config(), &format!("127.0.0.1:{port}")).await;
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let b = browser(&jar, &[("auth.example.test", port)]);
        let app = "http://app.example.test/reports?q=1";

        // Signed out: a redirect to sign in, coming back to the page asked for (401 for
        // nginx's auth_request, with the same Location).
        let r = check(&server, "app.example.test", "/reports?q=1", None, "").await;
        assert_eq!(r.status(), 302);
        let login = location(&r);
        assert_eq!(
            login,
            format!("{issuer}/login?rd=http%3A%2F%2Fapp.example.test%2Freports%3Fq%3D1")
        );
        let r = check(
            &server,
            "app.example.test",
            "/reports?q=1",
            None,
            "?mode=auth_request",
        )
        .await;
        assert_eq!(r.status(), 401);
        assert_eq!(location(&r), login);
        // A bypassed path needs no session, and carries no identity.
        let r = check(&server, "app.example.test", "/public/logo.png", None, "").await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "remote-user").is_none());
        // Dot segments do not smuggle a protected path under a bypassed one: refused.
        let r = check(&server, "app.example.test", "/public/../reports", None, "").await;
        assert_eq!(r.status(), 403);
        // A host no rule protects is refused, and so is a path an upstream could read as
        // another one.
        let r = check(&server, "wiki.example.test", "/", None, "").await;
        assert_eq!(r.status(), 403);
        for uri in ["/public/..%2freports", "/public/..;/reports", "//public/x"] {
            let r = check(&server, "app.example.test", uri, None, "").await;
            assert_eq!(r.status(), 403, "{uri}");
        }

        // The sign-in, and back: the forward-auth cookie on the parent domain.
        let r = sign_in_at(&b, &issuer, &login).await;
        assert_eq!(r.status(), 303);
        let back = format!("{issuer}{}", location(&r));
        assert!(back.contains("/login?rd="), "{back}");
        let r = b.get(&back).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), app);
        let set = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("latchkey_forward_auth="))
            .expect("the forward-auth cookie");
        for attr in ["Domain=example.test", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        // Not the Latchkey session cookie: that one stays on Latchkey's host.
        assert!(cookies_for(&jar, "http://app.example.test/").is_some());
        assert!(
            !cookies_for(&jar, "http://app.example.test/")
                .unwrap()
                .contains("latchkey_session")
        );
        let cookie = cookies_for(&jar, "http://app.example.test/").unwrap();
        let r = check(
            &server,
            "app.example.test",
            "/reports?q=1",
            Some(&cookie),
            "",
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "remote-user"), Some("ada@example.com"));
        assert_eq!(header(&r, "remote-email"), Some("ada@example.com"));
        assert_eq!(header(&r, "remote-name"), Some("Ada Lovelace"));
        assert_eq!(header(&r, "remote-id"), Some(f.user_id.as_str()));
        assert_eq!(header(&r, "remote-groups"), Some(""));
        // A host under a glob takes the same cookie.
        let r = check(&server, "x.apps.example.test", "/", Some(&cookie), "").await;
        assert_eq!(r.status(), 200);

        // Signed in again with the cookie there already: straight back, no sign-in page.
        let r = b.get(&login).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), app);

        // A rule for a group Ada is not in: 403; once provisioned into it, 200 with the group.
        let r = check(&server, "ops.example.test", "/", Some(&cookie), "").await;
        assert_eq!(r.status(), 403);
        let out = env
            .cli(&["scim-token", "create", "--name", "idp"], "")
            .await
            .unwrap();
        let token: Value = serde_json::from_str(&out).unwrap();
        let r = reqwest::Client::new()
            .post(server.url("/scim/v2/Groups"))
            .bearer_auth(token["scim_token"].as_str().unwrap())
            .header("content-type", "application/scim+json")
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "ops",
                    "members": [{"value": f.user_id}],
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        if cached {
            // The instance reuses its lookup for up to cache_ttl: the change is seen after.
            let r = check(&server, "ops.example.test", "/", Some(&cookie), "").await;
            assert_eq!(r.status(), 403);
            server.clock.advance(5);
        }
        let r = check(&server, "ops.example.test", "/", Some(&cookie), "").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "remote-groups"), Some("ops"));

        // A passkey-only host: a password sign-in is not enough; the sign-in page says why.
        let r = check(&server, "secure.example.test", "/", Some(&cookie), "").await;
        assert_eq!(r.status(), 302);
        let r = b.get(location(&r)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("asks for a passkey"));

        // No open redirect: rd must be on a protected host.
        for rd in [
            "https://evil.example.org/",
            "http://app.example.test.evil.org/",
            "http://ada@app.example.test/",
            "javascript:alert(1)",
            "/account",
        ] {
            let url =
                reqwest::Url::parse_with_params(&format!("{issuer}/login"), &[("rd", rd)]).unwrap();
            let r = b.get(url).send().await.unwrap();
            assert_eq!(r.status(), 400, "{rd}");
            assert!(r.headers().get("location").is_none(), "{rd}");
        }

        // Spoofed X-Forwarded-* from an address that is no trusted proxy: not believed, and
        // not answered (403): neither the bypass nor the session's identity comes through.
        let untrusted = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        for uri in ["/public/logo.png", "/reports"] {
            let r = untrusted
                .get(server.url("/forward-auth"))
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", "app.example.test")
                .header("x-forwarded-uri", uri)
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{uri}");
            assert!(header(&r, "remote-user").is_none());
            assert!(r.text().await.unwrap().contains("trusted_proxies"));
        }
        // A trusted proxy that leaves out what is asked about gets no answer to guess from.
        let r = reqwest::Client::new()
            .get(server.url("/forward-auth"))
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-uri", "/reports")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(header(&r, "remote-user").is_none());

        // Signing out of Latchkey ends the forward-auth session (the cookie, kept by a
        // browser that ignores the deletion, is refused too), with a cache as well: the
        // instance that signed the browser out forgets its lookups.
        let r = b.get(format!("{issuer}/account")).send().await.unwrap();
        let html = r.text().await.unwrap();
        let csrf = input_value(&html, "csrf_token").unwrap();
        let r = b
            .post(format!("{issuer}/account/signout"))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            r.headers().get_all("set-cookie").iter().any(|c| c
                .to_str()
                .unwrap()
                .starts_with("latchkey_forward_auth=;")
                && c.to_str().unwrap().contains("Max-Age=0")),
            "sign-out clears the forward-auth cookie"
        );
        let r = check(&server, "app.example.test", "/reports", Some(&cookie), "").await;
        assert_eq!(r.status(), 302);
        assert!(header(&r, "remote-user").is_none());
        server.stop().await;
    }
}

#[poem::handler]
fn hello(req: &poem::Request) -> String {
    let user = req
        .headers()
        .get("remote-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("nobody");
    format!("hello {user} at {}", req.uri().path())
}

/// The upstream behind the proxy: says who the proxy told it the user is.
async fn upstream() -> (u16, tokio::task::JoinHandle<()>) {
    let port = free_port().await;
    let listener = poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"));
    let task = tokio::spawn(async move {
        let _ = poem::Server::new(listener).run(hello).await;
    });
    (port, task)
}

const NGINX: &str = "/usr/sbin/nginx";

fn nginx_conf(dir: &std::path::Path, listen: u16, latchkey: u16, upstream: u16) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{listen};
    server_name app.example.test;

    location / {{
      auth_request /latchkey-auth;
      auth_request_set $latchkey_user $upstream_http_remote_user;
      auth_request_set $latchkey_email $upstream_http_remote_email;
      auth_request_set $latchkey_name $upstream_http_remote_name;
      auth_request_set $latchkey_groups $upstream_http_remote_groups;
      auth_request_set $latchkey_id $upstream_http_remote_id;
      auth_request_set $latchkey_login $upstream_http_location;
      error_page 401 =302 $latchkey_login;
      proxy_set_header Remote-User $latchkey_user;
      proxy_set_header Remote-Email $latchkey_email;
      proxy_set_header Remote-Name $latchkey_name;
      proxy_set_header Remote-Groups $latchkey_groups;
      proxy_set_header Remote-Id $latchkey_id;
      proxy_pass http://127.0.0.1:{upstream};
    }}

    location = /latchkey-auth {{
      internal;
      proxy_pass http://127.0.0.1:{latchkey}/forward-auth?mode=auth_request;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"#
    )
}

/// Which real proxy a test puts in front of the upstream.
#[derive(Clone, Copy)]
enum Proxy {
    Nginx,
    Caddy,
}

const CADDY: &str = "/usr/bin/caddy";

fn caddyfile(listen: u16, latchkey: u16, upstream: u16) -> String {
    // The README's Caddy snippet, on http and loopback ports.
    format!(
        r#"{{
	admin off
	auto_https off
}}
http://app.example.test:{listen} {{
	forward_auth 127.0.0.1:{latchkey} {{
		uri /forward-auth
		copy_headers Remote-User Remote-Email Remote-Name Remote-Groups Remote-Id
	}}
	reverse_proxy 127.0.0.1:{upstream}
}}
"#
    )
}

/// Starts `proxy` on `listen` in front of `upstream`, asking Latchkey on `latchkey`.
fn start_proxy(
    proxy: Proxy,
    dir: &std::path::Path,
    listen: u16,
    latchkey: u16,
    upstream: u16,
) -> Killed {
    let child = match proxy {
        Proxy::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(dir, listen, latchkey, upstream)).unwrap();
            Command::new(NGINX)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        }
        Proxy::Caddy => {
            let conf = dir.join("Caddyfile");
            std::fs::write(&conf, caddyfile(listen, latchkey, upstream)).unwrap();
            Command::new(CADDY)
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf)
                .env("HOME", dir)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }
    };
    Killed(child)
}

/// Whether the proxy's binary is here; under CI (which installs both) its absence fails.
fn installed(bin: &str, test: &str) -> bool {
    if std::path::Path::new(bin).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{bin} is not installed (apt-get install nginx caddy)"
    );
    eprintln!("SKIPPED {test}: no {bin}");
    false
}

#[tokio::test]
async fn a_real_nginx_protects_a_page_with_auth_request() {
    if installed(NGINX, "a_real_nginx_protects_a_page_with_auth_request") {
        for db in TestDb::all().await {
            behind(Proxy::Nginx, db).await;
        }
    }
}

#[tokio::test]
async fn a_real_caddy_protects_a_page_with_forward_auth() {
    if installed(CADDY, "a_real_caddy_protects_a_page_with_forward_auth") {
        for db in TestDb::all().await {
            behind(Proxy::Caddy, db).await;
        }
    }
}

/// A page behind `proxy`: signed out, to Latchkey's sign-in and back; signed in, through to
/// the upstream, which is told who the user is (never what the browser claims).
async fn behind(proxy: Proxy, db: TestDb) {
    let port = free_port().await;
    let issuer = format!("http://auth.example.test:{port}");
    let env = Env::new(db, &config(port));
    fixture(&env, &[]).await;
    let server = Server::start_at(env.config(), &format!("127.0.0.1:{port}")).await;
    let (up_port, _up) = upstream().await;
    let proxy_port = free_port().await;
    let dir = tempfile::tempdir().unwrap();
    let _proxy = start_proxy(proxy, dir.path(), proxy_port, port, up_port);
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let b = browser(
        &jar,
        &[
            ("auth.example.test", port),
            ("app.example.test", proxy_port),
        ],
    );
    let page = format!("http://app.example.test:{proxy_port}/dashboard");
    // The proxy takes a moment to listen.
    let mut first = None;
    for _ in 0..100 {
        match b
            .get(&page)
            .header("remote-user", "mallory@example.com")
            .send()
            .await
        {
            Ok(r) => {
                first = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let r = first.expect("the proxy answers");
    // Signed out (and a forged identity header does not help): to Latchkey's sign-in.
    assert_eq!(
        r.status(),
        302,
        "{:?}",
        std::fs::read_to_string(dir.path().join("error.log"))
    );
    let login = location(&r);
    assert_eq!(
        login,
        format!("{issuer}/login?rd=http%3A%2F%2Fapp.example.test%3A{proxy_port}%2Fdashboard")
    );
    let r = sign_in_at(&b, &issuer, &login).await;
    assert_eq!(r.status(), 303);
    let r = b
        .get(format!("{issuer}{}", location(&r)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), page);
    let r = b
        .get(&page)
        .header("remote-user", "mallory@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "hello ada@example.com at /dashboard"
    );
    server.stop().await;
}
