//! The flow's `ui` container as Kratos defines it (`ui.action`, `ui.method`, `ui.nodes` with
//! `group`, `attributes`, `messages`, `meta.label`) and the message catalogue: numeric ids in
//! Kratos's ranges with American English texts, so a UI can translate by id.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UiText {
    pub id: u32,
    pub text: String,
    /// `info`, `error` or `success`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub context: Value,
}

impl UiText {
    pub fn info(id: u32, text: impl Into<String>) -> Self {
        Self { id, text: text.into(), kind: "info".into(), context: Value::Null }
    }
    pub fn error(id: u32, text: impl Into<String>) -> Self {
        Self { id, text: text.into(), kind: "error".into(), context: Value::Null }
    }
    pub fn success(id: u32, text: impl Into<String>) -> Self {
        Self { id, text: text.into(), kind: "success".into(), context: Value::Null }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UiNode {
    #[serde(rename = "type")]
    pub node_type: String,
    pub group: String,
    pub attributes: Value,
    pub messages: Vec<UiText>,
    pub meta: Value,
}

impl UiNode {
    /// The input's `name`, for inputs.
    pub fn name(&self) -> &str {
        self.attributes["name"].as_str().unwrap_or("")
    }
}

/// An `<input>` node.
pub fn input(group: &str, name: &str, input_type: &str, value: &str, required: bool, label: Option<UiText>) -> UiNode {
    let mut attributes = json!({
        "name": name, "type": input_type, "required": required, "disabled": false, "node_type": "input",
    });
    if input_type != "password" {
        attributes["value"] = json!(value);
    }
    let autocomplete = match (name, input_type) {
        ("password", _) => Some("current-password"),
        (_, "email") | ("identifier", _) | ("traits.email", _) | ("email", _) => Some("email"),
        ("code", _) => Some("one-time-code"),
        _ => None,
    };
    if let Some(a) = autocomplete {
        attributes["autocomplete"] = json!(a);
    }
    UiNode {
        node_type: "input".into(),
        group: group.into(),
        attributes,
        messages: Vec::new(),
        meta: label.map_or_else(|| json!({}), |l| json!({"label": l})),
    }
}

/// The submit button that selects `method`.
pub fn submit(group: &str, method: &str, label: UiText) -> UiNode {
    UiNode {
        node_type: "input".into(),
        group: group.into(),
        attributes: json!({"name": "method", "type": "submit", "value": method, "disabled": false, "node_type": "input"}),
        messages: Vec::new(),
        meta: json!({"label": label}),
    }
}

/// A submit button with its own name and value (e.g. `resend=code`).
pub fn button(group: &str, name: &str, value: &str, label: UiText) -> UiNode {
    UiNode {
        node_type: "input".into(),
        group: group.into(),
        attributes: json!({"name": name, "type": "submit", "value": value, "disabled": false, "node_type": "input"}),
        messages: Vec::new(),
        meta: json!({"label": label}),
    }
}

pub fn hidden(group: &str, name: &str, value: &str) -> UiNode {
    UiNode {
        node_type: "input".into(),
        group: group.into(),
        attributes: json!({"name": name, "type": "hidden", "value": value, "required": true, "disabled": false, "node_type": "input"}),
        messages: Vec::new(),
        meta: json!({}),
    }
}

pub fn script(group: &str, src: &str, integrity: &str) -> UiNode {
    UiNode {
        node_type: "script".into(),
        group: group.into(),
        attributes: json!({"src": src, "async": true, "referrerpolicy": "no-referrer", "crossorigin": "anonymous",
                           "integrity": integrity, "type": "text/javascript", "id": "webauthn_script", "node_type": "script"}),
        messages: Vec::new(),
        meta: json!({}),
    }
}

/// Message catalogue. Ids follow Kratos (`text/id.go`) where Kratos has the message.
pub mod msg {
    use super::UiText;

    pub fn sign_in() -> UiText {
        UiText::info(1_010_001, "Sign in")
    }
    pub fn sign_in_with_code() -> UiText {
        UiText::info(1_010_015, "Send sign in code")
    }
    pub fn code_sent() -> UiText {
        UiText::info(
            1_010_014,
            "An email containing a code has been sent to the email address you provided. If you have not received an \
             email, check the spelling of the address and make sure to use the address you registered with.",
        )
    }
    pub fn continue_() -> UiText {
        UiText::info(1_070_009, "Continue")
    }
    pub fn resend() -> UiText {
        UiText::info(1_070_008, "Resend code")
    }
    pub fn sign_in_with_passkey() -> UiText {
        UiText::info(1_010_021, "Sign in with passkey")
    }
    pub fn sign_up() -> UiText {
        UiText::info(1_040_001, "Sign up")
    }
    pub fn sign_up_with_code() -> UiText {
        UiText::info(1_040_006, "Sign up with code")
    }
    pub fn sign_up_with_passkey() -> UiText {
        UiText::info(1_040_007, "Sign up with passkey")
    }
    /// Ours (Kratos has no two-step passkey sign-up message): ids in 1040900+ stay clear of
    /// Kratos's registration range.
    pub fn confirm_with_passkey() -> UiText {
        UiText::info(1_040_901, "Now confirm with your passkey.")
    }
    pub fn create_passkey() -> UiText {
        UiText::info(1_040_902, "Create passkey")
    }
    pub fn back() -> UiText {
        UiText::info(1_040_903, "Back")
    }
    pub fn registration_code_sent() -> UiText {
        UiText::info(1_040_005, "An email containing a code has been sent to the email address you provided.")
    }
    pub fn save() -> UiText {
        UiText::info(1_050_001, "Save")
    }
    pub fn settings_saved() -> UiText {
        UiText::success(1_050_001, "Your changes have been saved!")
    }
    pub fn add_passkey() -> UiText {
        UiText::info(1_050_019, "Add passkey")
    }
    pub fn remove_passkey(name: &str) -> UiText {
        UiText::info(1_050_020, format!("Remove passkey \"{name}\""))
    }
    pub fn recovery_code_sent() -> UiText {
        UiText::info(
            1_060_003,
            "An email containing a recovery code has been sent to the email address you provided. If you have not \
             received an email, check the spelling of the address and make sure to use the address you registered with.",
        )
    }
    pub fn recovered() -> UiText {
        UiText::success(
            1_060_001,
            "You successfully recovered your account. Please change your password or set up an alternative login method (e.g. social sign in) within the next minutes.",
        )
    }
    pub fn verification_code_sent() -> UiText {
        UiText::info(
            1_080_003,
            "An email containing a verification code has been sent to the email address you provided. If you have not \
             received an email, check the spelling of the address and make sure to use the address you registered with.",
        )
    }
    pub fn verified() -> UiText {
        UiText::success(1_080_002, "You successfully verified your email address.")
    }
    pub fn label_password() -> UiText {
        UiText::info(1_070_001, "Password")
    }
    pub fn label_identifier() -> UiText {
        UiText::info(1_070_004, "E-mail")
    }
    pub fn label_code() -> UiText {
        UiText::info(1_070_012, "Code")
    }
    pub fn label_email() -> UiText {
        UiText::info(1_070_007, "Email")
    }
    pub fn required(field: &str) -> UiText {
        UiText::error(4_000_002, format!("Property {field} is missing."))
    }
    pub fn invalid_credentials() -> UiText {
        UiText::error(
            4_000_006,
            "The provided credentials are invalid, check for spelling mistakes in your password or username, email \
             address, or phone number.",
        )
    }
    pub fn duplicate() -> UiText {
        UiText::error(4_000_007, "An account with the same identifier (email, phone, username, ...) exists already.")
    }
    pub fn flow_expired() -> UiText {
        UiText::error(4_010_001, "The request expired; please try again.")
    }
    pub fn no_strategy() -> UiText {
        UiText::error(4_010_002, "Could not find a strategy to log you in with. Did you fill out the form correctly?")
    }
    pub fn identity_disabled() -> UiText {
        UiText::error(4_010_011, "Your account is disabled. Contact the administrator.")
    }
    pub fn login_code_invalid() -> UiText {
        UiText::error(4_010_008, "The login code is invalid or has already been used. Please try again.")
    }
    pub fn registration_code_invalid() -> UiText {
        UiText::error(4_040_003, "The registration code is invalid or has already been used. Please try again.")
    }
    pub fn recovery_code_invalid() -> UiText {
        UiText::error(4_060_006, "The recovery code is invalid or has already been used. Please try again.")
    }
    pub fn verification_code_invalid() -> UiText {
        UiText::error(4_070_006, "The verification code is invalid or has already been used. Please try again.")
    }
    /// Ours: Kratos does not rate-limit on its own.
    pub fn too_many_attempts(minutes: i64) -> UiText {
        UiText::error(
            4_000_045,
            format!(
                "Too many failed attempts. Wait {minutes} minute(s) before trying again, or use another way to sign in."
            ),
        )
    }
    pub fn not_allowed(text: String) -> UiText {
        UiText::error(crate::policy::MESSAGE_ID, text)
    }
}
