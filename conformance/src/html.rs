//! Just enough HTML reading to act as a browser on sign-in, consent, logout and form_post
//! pages: forms, their inputs and buttons, with attribute values unescaped.

#[derive(Debug, Clone, Default)]
pub struct Form {
    pub action: String,
    pub method: String,
    /// Every named input: `(name, type, value)`.
    pub inputs: Vec<(String, String, String)>,
    /// Every named submit button: `(name, value)`.
    pub buttons: Vec<(String, String)>,
}

impl Form {
    pub fn has_password(&self) -> bool {
        self.inputs.iter().any(|(_, t, _)| t == "password")
    }
}

pub fn forms(html: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find("<form").map(|i| i + pos) {
        let end = lower[start..]
            .find("</form>")
            .map_or(html.len(), |i| i + start);
        let head_end = lower[start..].find('>').map_or(end, |i| i + start);
        let head = &html[start..head_end];
        let mut form = Form {
            action: attr(head, "action").unwrap_or_default(),
            method: attr(head, "method")
                .unwrap_or_else(|| "get".into())
                .to_ascii_lowercase(),
            ..Form::default()
        };
        let body = &html[head_end..end];
        let body_lower = &lower[head_end..end];
        for (tag, is_button) in [("<input", false), ("<button", true)] {
            let mut p = 0;
            while let Some(i) = body_lower[p..].find(tag).map(|i| i + p) {
                let close = body_lower[i..].find('>').map_or(body.len(), |j| j + i);
                let t = &body[i..close];
                if let Some(name) = attr(t, "name") {
                    let value = attr(t, "value").unwrap_or_default();
                    if is_button {
                        form.buttons.push((name, value));
                    } else {
                        let kind = attr(t, "type")
                            .unwrap_or_else(|| "text".into())
                            .to_ascii_lowercase();
                        form.inputs.push((name, kind, value));
                    }
                }
                p = close;
            }
        }
        out.push(form);
        pos = end.max(start + 5);
    }
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let needle = format!(" {name}=\"");
    let i = lower.find(&needle)? + needle.len();
    let j = tag[i..].find('"')? + i;
    Some(unescape(&tag[i..j]))
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
