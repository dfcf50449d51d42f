//! HTML building: the one escape function every value goes through, and the generic renderer
//! that turns a flow's `ui` container (Kratos's `ui.action`, `ui.nodes`, `ui.messages`) into
//! forms, the way Ory's reference UI does. It never emits inline script or event handler
//! attributes (the CSP forbids them): a node's `onclickTrigger` becomes a
//! `data-portcullis-trigger` attribute that the passkey script binds.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::Value;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
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

/// A JSON value as attribute text: strings as they are, numbers and booleans printed.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Only web and same-site URLs become `href`/`src` (never `javascript:`).
fn safe_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (lower.starts_with('/') && !lower.starts_with("//"))
}

const INPUT_TYPES: &[&str] =
    &["text", "email", "password", "tel", "number", "url", "date", "datetime-local", "checkbox", "hidden"];

/// Messages (`ui.messages` or a node's) as paragraphs; errors are alerts, the rest status.
pub fn messages(list: &Value, id: Option<&str>) -> String {
    let mut out = String::new();
    for (i, m) in list.as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let kind = match str_of(m, "type") {
            "error" => "error",
            "success" => "success",
            _ => "info",
        };
        let role = if kind == "error" { "alert" } else { "status" };
        let id_attr = id.map(|id| format!(" id=\"{}\"", escape(&format!("{id}-msg{i}")))).unwrap_or_default();
        let _ = write!(
            out,
            "<p{id_attr} class=\"msg msg-{kind}\" role=\"{role}\" data-message-id=\"{}\">{}</p>",
            m["id"].as_u64().unwrap_or(0),
            escape(str_of(m, "text"))
        );
    }
    out
}

/// What a rendered flow needs besides its JSON.
#[derive(Debug, Default)]
pub struct FlowView {
    /// The public URL is plain http on a host that is not loopback: WebAuthn will refuse.
    pub passkeys_need_https: bool,
}

pub const PASSKEY_HTTPS_NOTICE: &str = "Passkeys need a secure connection (HTTPS). This site is served over plain \
    HTTP, so your browser will refuse to use a passkey here; use another way to sign in or ask the administrator to \
    serve this site over HTTPS.";

fn group_title(group: &str) -> String {
    match group {
        "profile" => "Profile".into(),
        "password" => "Password".into(),
        "passkey" => "Passkeys".into(),
        "code" => "One-time code".into(),
        "webauthn" => "Security keys".into(),
        "totp" => "Authenticator app".into(),
        "lookup_secret" => "Backup codes".into(),
        "oidc" => "Social sign-in".into(),
        other => {
            let mut c = other.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        }
    }
}

fn is_visible_input(n: &Value) -> bool {
    str_of(n, "type") == "input" && !matches!(str_of(&n["attributes"], "type"), "hidden" | "submit" | "button")
}

/// Unique, readable element ids (`traits.email` → `traits-email`).
#[derive(Default)]
struct Ids(HashSet<String>);

impl Ids {
    fn for_name(&mut self, name: &str) -> String {
        let base: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
        let base = if base.is_empty() { "field".to_owned() } else { base };
        let mut id = base.clone();
        let mut n = 2;
        while !self.0.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

/// The flow's messages and forms. When the `default` group holds visible inputs (an
/// identifier, traits), every method shares them, so all nodes go in one form; otherwise (a
/// settings flow) each group gets its own form so that one group's required inputs never
/// block another group's button.
pub fn flow(flow: &Value, view: &FlowView) -> String {
    let ui = &flow["ui"];
    let action = str_of(ui, "action");
    let nodes: &[Value] = ui["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = messages(&ui["messages"], None);
    let mut ids = Ids::default();
    let mut groups: Vec<&str> = Vec::new();
    for n in nodes {
        let g = str_of(n, "group");
        if g != "default" && str_of(n, "type") != "script" && !groups.contains(&g) {
            groups.push(g);
        }
    }
    let shared = nodes.iter().any(|n| str_of(n, "group") == "default" && is_visible_input(n));
    let forms: Vec<(Option<&str>, Vec<&Value>)> = if shared || groups.len() <= 1 {
        vec![(None, nodes.iter().filter(|n| str_of(n, "type") != "script").collect())]
    } else {
        groups
            .iter()
            .map(|g| {
                let members = nodes
                    .iter()
                    .filter(|n| str_of(n, "type") != "script" && [*g, "default"].contains(&str_of(n, "group")))
                    .collect();
                (Some(*g), members)
            })
            .collect()
    };
    for (group, members) in forms {
        if members.iter().all(|n| str_of(&n["attributes"], "type") == "hidden") {
            continue;
        }
        if let Some(g) = group {
            let _ = write!(out, "<section><h2>{}</h2>", escape(&group_title(g)));
        }
        let _ = write!(out, "<form method=\"POST\" action=\"{}\">", escape(action));
        let mut noticed = false;
        let mut primary = true;
        for n in &members {
            if view.passkeys_need_https && !noticed && str_of(n, "group") == "passkey" {
                noticed = true;
                let _ = write!(out, "<p class=\"msg msg-error\" role=\"alert\">{}</p>", escape(PASSKEY_HTTPS_NOTICE));
            }
            out.push_str(&node(n, &members, &mut ids, &mut primary));
        }
        out.push_str("</form>");
        if group.is_some() {
            out.push_str("</section>");
        }
    }
    let mut seen = HashSet::new();
    for n in nodes.iter().filter(|n| str_of(n, "type") == "script") {
        let a = &n["attributes"];
        let src = str_of(a, "src");
        if safe_url(src) && seen.insert(src) {
            out.push_str(&script(a));
        }
    }
    out
}

fn script(a: &Value) -> String {
    let mut s = format!("<script src=\"{}\"", escape(str_of(a, "src")));
    if let Some(i) = a["integrity"].as_str().filter(|i| !i.is_empty()) {
        let _ = write!(s, " integrity=\"{}\"", escape(i));
    }
    let cross = a["crossorigin"].as_str().filter(|c| !c.is_empty()).unwrap_or("anonymous");
    let _ = write!(s, " crossorigin=\"{}\"", escape(cross));
    if let Some(r) = a["referrerpolicy"].as_str().filter(|r| !r.is_empty()) {
        let _ = write!(s, " referrerpolicy=\"{}\"", escape(r));
    }
    if let Some(id) = a["id"].as_str().filter(|i| !i.is_empty()) {
        let _ = write!(s, " id=\"{}\"", escape(id));
    }
    if a["async"].as_bool().unwrap_or(false) {
        s.push_str(" async");
    }
    s.push_str("></script>");
    s
}

/// Whether a submit button skips the browser's own validation: secondary actions (resend)
/// and buttons whose form also holds another method's required inputs (registering by code
/// must not demand a password). The server validates every submission anyway.
fn skips_validation(button: &Value, form: &[&Value]) -> bool {
    let a = &button["attributes"];
    if str_of(a, "name") != "method" {
        return true;
    }
    let group = str_of(button, "group");
    form.iter().any(|n| {
        let g = str_of(n, "group");
        g != "default" && g != group && is_visible_input(n) && n["attributes"]["required"].as_bool().unwrap_or(false)
    })
}

fn label_of(n: &Value) -> Option<&str> {
    n["meta"]["label"]["text"].as_str().filter(|t| !t.is_empty())
}

/// `primary` is true until the form's first method button has been rendered: later methods
/// are styled as alternatives.
fn node(n: &Value, form: &[&Value], ids: &mut Ids, primary: &mut bool) -> String {
    match str_of(n, "type") {
        "input" => input(n, form, ids, primary),
        "text" => {
            let t = &n["attributes"]["text"];
            format!("<p class=\"text\">{}</p>{}", escape(str_of(t, "text")), messages(&n["messages"], None))
        }
        "a" => {
            let a = &n["attributes"];
            let href = str_of(a, "href");
            if !safe_url(href) {
                return String::new();
            }
            let title = a["title"]["text"].as_str().unwrap_or(href);
            format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(title))
        }
        _ => String::new(),
    }
}

fn input(n: &Value, form: &[&Value], ids: &mut Ids, primary: &mut bool) -> String {
    let a = &n["attributes"];
    let name = str_of(a, "name");
    let kind = str_of(a, "type");
    let value = text(&a["value"]);
    let disabled = if a["disabled"].as_bool().unwrap_or(false) { " disabled" } else { "" };
    let required = a["required"].as_bool().unwrap_or(false);
    let label = label_of(n);
    let value_attr = |v: &Option<String>| v.as_ref().map(|v| format!(" value=\"{}\"", escape(v))).unwrap_or_default();

    if let Some(trigger) = a["onclickTrigger"].as_str().filter(|t| !t.is_empty()) {
        return format!(
            "<button type=\"button\" class=\"secondary\" data-portcullis-trigger=\"{}\"{disabled}>{}</button>{}",
            escape(trigger),
            escape(label.unwrap_or(name)),
            messages(&n["messages"], None)
        );
    }
    let onload = a["onloadTrigger"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| format!(" data-portcullis-onload=\"{}\"", escape(t)))
        .unwrap_or_default();
    match kind {
        "hidden" => format!(
            "<input type=\"hidden\" name=\"{}\"{}{onload}>{}",
            escape(name),
            value_attr(&value),
            messages(&n["messages"], None)
        ),
        "submit" | "button" => {
            let novalidate = if kind == "submit" && skips_validation(n, form) { " formnovalidate" } else { "" };
            let is_primary = *primary && kind == "submit" && str_of(a, "name") == "method";
            *primary &= !is_primary;
            let class = if is_primary { "" } else { " class=\"secondary\"" };
            format!(
                "<button type=\"{kind}\" name=\"{}\"{}{class}{novalidate}{disabled}>{}</button>{}",
                escape(name),
                value_attr(&value),
                escape(label.unwrap_or(name)),
                messages(&n["messages"], None)
            )
        }
        _ => {
            let id = ids.for_name(name);
            let has_messages = n["messages"].as_array().is_some_and(|m| !m.is_empty());
            let has_errors = n["messages"].as_array().is_some_and(|m| m.iter().any(|m| str_of(m, "type") == "error"));
            let mut attrs = String::new();
            if required {
                attrs.push_str(" required");
            }
            attrs.push_str(disabled);
            for key in ["autocomplete", "pattern"] {
                if let Some(v) = a[key].as_str().filter(|v| !v.is_empty()) {
                    let _ = write!(attrs, " {key}=\"{}\"", escape(v));
                }
            }
            for key in ["minlength", "maxlength"] {
                if let Some(v) = a[key].as_u64() {
                    let _ = write!(attrs, " {key}=\"{v}\"");
                }
            }
            if has_messages {
                let described: Vec<String> =
                    (0..n["messages"].as_array().map_or(0, Vec::len)).map(|i| format!("{id}-msg{i}")).collect();
                let _ = write!(attrs, " aria-describedby=\"{}\"", escape(&described.join(" ")));
            }
            if has_errors {
                attrs.push_str(" aria-invalid=\"true\"");
            }
            attrs.push_str(&onload);
            let label_html = format!("<label for=\"{}\">{}</label>", escape(&id), escape(label.unwrap_or(name)));
            let msgs = messages(&n["messages"], Some(&id));
            if let Some(options) = a["options"].as_array().filter(|o| !o.is_empty()) {
                let current = value.clone().unwrap_or_default();
                let mut select = format!("<select id=\"{}\" name=\"{}\"{attrs}>", escape(&id), escape(name));
                if !required || current.is_empty() {
                    select.push_str("<option value=\"\"></option>");
                }
                for o in options {
                    let (v, l) = match o {
                        Value::Object(_) => {
                            (text(&o["value"]).unwrap_or_default(), o["label"]["text"].as_str().map(str::to_owned))
                        }
                        other => (text(other).unwrap_or_default(), None),
                    };
                    let selected = if v == current { " selected" } else { "" };
                    let _ = write!(
                        select,
                        "<option value=\"{}\"{selected}>{}</option>",
                        escape(&v),
                        escape(l.as_deref().unwrap_or(&v))
                    );
                }
                select.push_str("</select>");
                return format!("<div class=\"field\">{label_html}{select}{msgs}</div>");
            }
            if kind == "checkbox" {
                let checked = if matches!(a["value"], Value::Bool(true)) || value.as_deref() == Some("true") {
                    " checked"
                } else {
                    ""
                };
                return format!(
                    "<div class=\"check\"><input type=\"checkbox\" id=\"{}\" name=\"{}\" value=\"true\"{checked}{attrs}>{label_html}{msgs}</div>",
                    escape(&id),
                    escape(name)
                );
            }
            let kind = if INPUT_TYPES.contains(&kind) { kind } else { "text" };
            // A password is never sent back to the browser, whatever the node says.
            let value = if kind == "password" { String::new() } else { value_attr(&value) };
            format!(
                "<div class=\"field\">{label_html}<input id=\"{}\" name=\"{}\" type=\"{kind}\"{value}{attrs}>{msgs}</div>",
                escape(&id),
                escape(name)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escape_covers_element_and_attribute_contexts() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    fn node(group: &str, name: &str, kind: &str, required: bool, label: Option<&str>) -> Value {
        json!({"type": "input", "group": group, "messages": [],
               "attributes": {"name": name, "type": kind, "required": required, "value": ""},
               "meta": label.map_or(json!({}), |l| json!({"label": {"id": 1, "text": l, "type": "info"}}))})
    }

    fn submit(group: &str, name: &str, value: &str, label: &str) -> Value {
        json!({"type": "input", "group": group, "messages": [],
               "attributes": {"name": name, "type": "submit", "value": value},
               "meta": {"label": {"id": 1, "text": label, "type": "info"}}})
    }

    #[test]
    fn one_form_when_methods_share_inputs_and_buttons_only_validate_their_own_method() {
        let f = json!({"ui": {"action": "https://id.example/self-service/registration?flow=1", "messages": [], "nodes": [
            node("default", "csrf_token", "hidden", true, None),
            node("default", "traits.email", "email", true, Some("E-mail")),
            node("password", "password", "password", true, Some("Password")),
            submit("password", "method", "password", "Sign up"),
            submit("code", "method", "code", "Sign up with code"),
            submit("code", "resend", "code", "Resend code"),
        ]}});
        let html = flow(&f, &FlowView::default());
        assert_eq!(html.matches("<form").count(), 1);
        assert!(html.contains("<button type=\"submit\" name=\"method\" value=\"password\">Sign up</button>"), "{html}");
        assert!(html.contains("value=\"code\" class=\"secondary\" formnovalidate>Sign up with code"), "{html}");
        assert!(html.contains("value=\"code\" class=\"secondary\" formnovalidate>Resend code"), "{html}");
        assert!(html.contains("<label for=\"traits-email\">E-mail</label><input id=\"traits-email\" name=\"traits.email\" type=\"email\" value=\"\" required>"), "{html}");
    }

    #[test]
    fn one_form_per_group_when_nothing_visible_is_shared() {
        let f = json!({"ui": {"action": "/a", "messages": [], "nodes": [
            node("default", "csrf_token", "hidden", true, None),
            node("profile", "traits.email", "email", true, Some("E-mail")),
            submit("profile", "method", "profile", "Save"),
            node("password", "password", "password", true, Some("Password")),
            submit("password", "method", "password", "Save"),
        ]}});
        let html = flow(&f, &FlowView::default());
        assert_eq!(html.matches("<form").count(), 2, "{html}");
        assert_eq!(html.matches("name=\"csrf_token\"").count(), 2, "each form carries the CSRF token");
        assert!(html.contains("<h2>Profile</h2>") && html.contains("<h2>Password</h2>"));
        assert!(!html.contains("formnovalidate"), "{html}");
    }

    #[test]
    fn passkey_buttons_and_scripts_need_no_inline_javascript() {
        let f = json!({"ui": {"action": "/a", "messages": [], "nodes": [
            node("default", "identifier", "text", true, Some("E-mail")),
            node("passkey", "passkey_challenge", "hidden", true, None),
            {"type": "input", "group": "passkey", "messages": [], "meta": {"label": {"id": 1, "text": "Sign in with passkey", "type": "info"}},
             "attributes": {"name": "passkey_login_trigger", "type": "button", "onclick": "window.oryPasskeyLogin()", "onclickTrigger": "oryPasskeyLogin"}},
            {"type": "script", "group": "passkey", "messages": [], "meta": {},
             "attributes": {"src": "http://id.example/.well-known/ory/webauthn.js", "integrity": "sha512-abc", "crossorigin": "anonymous", "async": true}},
            {"type": "script", "group": "passkey", "messages": [], "meta": {}, "attributes": {"src": "javascript:alert(1)"}},
        ]}});
        let html = flow(&f, &FlowView { passkeys_need_https: true });
        assert!(html.contains("<button type=\"button\" class=\"secondary\" data-portcullis-trigger=\"oryPasskeyLogin\">Sign in with passkey</button>"), "{html}");
        assert!(!html.contains("onclick"), "{html}");
        assert!(html.contains("<script src=\"http://id.example/.well-known/ory/webauthn.js\" integrity=\"sha512-abc\" crossorigin=\"anonymous\" async></script>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("Passkeys need a secure connection"), "{html}");
        let secure = flow(&f, &FlowView::default());
        assert!(!secure.contains("Passkeys need a secure connection"));
    }

    #[test]
    fn selects_checkboxes_messages_and_values_are_escaped() {
        let mut email = node("default", "traits.email", "email", true, Some("E-mail"));
        email["attributes"]["value"] = json!("\"><script>alert(1)</script>");
        email["messages"] = json!([{"id": 4_000_001, "text": "<script>bad()</script>", "type": "error"}]);
        let mut plan = node("default", "traits.plan", "text", false, Some("Plan"));
        plan["attributes"]["options"] = json!(["free", "<pro>"]);
        plan["attributes"]["value"] = json!("<pro>");
        let f = json!({"ui": {"action": "/a?x=\"", "messages": [{"id": 1, "text": "<b>hi</b>", "type": "info"}], "nodes": [
            email, plan, node("default", "traits.tos", "checkbox", false, Some("I agree")),
        ]}});
        let html = flow(&f, &FlowView::default());
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""), "{html}");
        assert!(html.contains("<p id=\"traits-email-msg0\" class=\"msg msg-error\" role=\"alert\" data-message-id=\"4000001\">&lt;script&gt;bad()&lt;/script&gt;</p>"), "{html}");
        assert!(html.contains("aria-describedby=\"traits-email-msg0\" aria-invalid=\"true\""), "{html}");
        assert!(html.contains("role=\"status\" data-message-id=\"1\">&lt;b&gt;hi&lt;/b&gt;"), "{html}");
        assert!(html.contains("<select id=\"traits-plan\" name=\"traits.plan\"><option value=\"\"></option><option value=\"free\">free</option><option value=\"&lt;pro&gt;\" selected>&lt;pro&gt;</option></select>"), "{html}");
        assert!(html.contains("<input type=\"checkbox\" id=\"traits-tos\" name=\"traits.tos\" value=\"true\"><label for=\"traits-tos\">I agree</label>"), "{html}");
        assert!(html.contains("action=\"/a?x=&quot;\""));
    }
}
