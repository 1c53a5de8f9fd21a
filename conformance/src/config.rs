//! `oidcc-config-certification-test-plan`: `oidcc-discovery-endpoint-verification`.

use serde_json::Value;

use crate::report::Outcome;

const REQUIRED_ENDPOINTS: [&str; 4] = [
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
];

/// Checks the metadata document as the suite does. An `http://` issuer on a loopback host
/// passes with a warning: certification needs https, a local test host cannot have it.
pub fn discovery_endpoint_verification(issuer: &str, content_type: &str, doc: &Value) -> Outcome {
    match check(issuer, content_type, doc) {
        Ok(warnings) if warnings.is_empty() => Outcome::Pass,
        Ok(warnings) => Outcome::Warn(warnings.join("; ")),
        Err(why) => Outcome::Fail(why),
    }
}

fn check(issuer: &str, content_type: &str, doc: &Value) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "content type {content_type:?} is not application/json"
        ));
    }
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("issuer differs from the URL used".into());
    }
    let https_or_loopback = |name: &str, v: &str| -> Result<(), String> {
        let u = url::Url::parse(v).map_err(|_| format!("{name} is not a URL"))?;
        match u.scheme() {
            "https" => Ok(()),
            "http" if matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(()),
            _ => Err(format!("{name} must be https")),
        }
    };
    https_or_loopback("issuer", issuer)?;
    if issuer.starts_with("http://") {
        warnings
            .push("the issuer is http on a loopback test host; certification needs https".into());
    }
    for e in REQUIRED_ENDPOINTS {
        let v = doc
            .get(e)
            .and_then(Value::as_str)
            .ok_or(format!("{e} is missing"))?;
        https_or_loopback(e, v)?;
    }
    let list = |name: &str| -> Result<Vec<String>, String> {
        doc.get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .ok_or(format!("{name} must be an array of strings"))
    };
    let rt = list("response_types_supported")?;
    if !rt.iter().any(|r| r == "code") {
        return Err("response_types_supported lacks code".into());
    }
    let st = list("subject_types_supported")?;
    if !st.iter().all(|s| s == "public" || s == "pairwise") || st.is_empty() {
        return Err("subject_types_supported must list public and/or pairwise".into());
    }
    let algs = list("id_token_signing_alg_values_supported")?;
    if !algs.iter().any(|a| a == "RS256") {
        return Err("id_token_signing_alg_values_supported must include RS256".into());
    }
    if doc
        .get("request_object_signing_alg_values_supported")
        .is_some()
    {
        let ro = list("request_object_signing_alg_values_supported")?;
        if !ro.iter().any(|a| a == "RS256") {
            return Err("request_object_signing_alg_values_supported must include RS256".into());
        }
    }
    for b in [
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "claims_parameter_supported",
    ] {
        if doc.get(b).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("{b} must be a boolean"));
        }
    }
    if doc.get("userinfo_signing_alg_values_supported").is_some() {
        list("userinfo_signing_alg_values_supported")?;
    }
    let scopes = list("scopes_supported")?;
    if !scopes.iter().any(|s| s == "openid") {
        return Err("scopes_supported must include openid".into());
    }
    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err("scopes_supported has a malformed scope".into());
    }
    if doc.get("grant_types_supported").is_some() {
        list("grant_types_supported")?;
    }
    if doc.get("claims_supported").is_some() {
        list("claims_supported")?;
    } else {
        warnings.push("claims_supported is absent".into());
    }
    if doc.get("code_challenge_methods_supported").is_some() {
        list("code_challenge_methods_supported")?;
    }
    for l in ["ui_locales_supported", "claims_locales_supported"] {
        if doc.get(l).is_some() {
            let locales = list(l)?;
            if locales.iter().any(|x| x.contains('_')) {
                return Err(format!("{l} must use BCP 47 tags (with -)"));
            }
        }
    }
    Ok(warnings)
}
