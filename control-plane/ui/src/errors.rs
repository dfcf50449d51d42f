//! The error page's texts: a fixed catalogue keyed by the error ids self-service flows
//! redirect with (Kratos's ids, plus ours). Nothing from the request is ever shown, so a
//! crafted `?id=` link cannot put words in the page.

/// Where the page's button leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    SignIn,
    Account,
    Settings,
}

#[derive(Debug)]
pub struct Entry {
    pub id: &'static str,
    pub title: &'static str,
    pub text: &'static str,
    pub next: Next,
}

const CATALOGUE: &[Entry] = &[
    Entry {
        id: "security_csrf_violation",
        title: "Your browser's security check failed",
        text: "This page was opened in a different browser, or on a different address, from the one that started \
               it, so it was stopped to protect your account. Start again from this browser. If it keeps happening, \
               make sure cookies are allowed and that you use the same web address throughout.",
        next: Next::SignIn,
    },
    Entry {
        id: "security_identity_mismatch",
        title: "This page belongs to another account",
        text: "The page was started while another account was signed in. Start again.",
        next: Next::Settings,
    },
    Entry {
        id: "self_service_flow_expired",
        title: "This page has expired",
        text: "You took a little too long, so this page expired for your security. Start again.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_not_found",
        title: "This page no longer exists",
        text: "The link is old or was already used. Start again.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_replaced",
        title: "The form was sent twice",
        text: "The form was submitted twice at the same time. Go back and try again.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_rate_limited",
        title: "Too many attempts",
        text: "There were too many attempts in a short time. Wait a few minutes, then try again.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_busy",
        title: "The server is busy",
        text: "Too many people are signing in right now. Wait a moment, then try again.",
        next: Next::SignIn,
    },
    Entry {
        id: "session_revocation_list_full",
        title: "Signing in is paused",
        text: "Signing in is paused for a while to protect the site. Try again later; if it keeps happening, \
               contact the administrator.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_return_to_forbidden",
        title: "This link is not allowed",
        text: "The link that sent you here asked to continue to an address this site does not trust, so it was \
               stopped. Sign in directly instead.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_disabled",
        title: "Not available",
        text: "This feature is turned off on this site. Contact the administrator if you need it.",
        next: Next::SignIn,
    },
    Entry {
        id: "self_service_flow_logout_token_invalid",
        title: "You could not be signed out",
        text: "The sign-out link is not valid for this browser. Open your account page and sign out from there.",
        next: Next::Account,
    },
    Entry {
        id: "session_already_available",
        title: "You are already signed in",
        text: "You are already signed in on this browser.",
        next: Next::Account,
    },
    Entry { id: "session_inactive", title: "You are not signed in", text: "Sign in to continue.", next: Next::SignIn },
    Entry {
        id: "session_refresh_required",
        title: "Please sign in again",
        text: "For your security, sign in again before changing your e-mail address, password or passkeys.",
        next: Next::SignIn,
    },
    Entry {
        id: "session_aal2_required",
        title: "A second factor is required",
        text: "Confirm it is you with your second factor to continue.",
        next: Next::SignIn,
    },
    Entry {
        id: "browser_location_change_required",
        title: "Continue in your browser",
        text: "This step has to be completed in a web browser.",
        next: Next::SignIn,
    },
    Entry {
        id: "bad_request",
        title: "Something was wrong with the request",
        text: "The page could not understand what was sent. Start again.",
        next: Next::SignIn,
    },
];

const GENERIC: Entry = Entry {
    id: "",
    title: "Something went wrong",
    text: "An unexpected error occurred. Try again in a moment; if it keeps happening, contact the administrator.",
    next: Next::SignIn,
};

/// The catalogue entry for `id`, or the generic one (whose `id` is empty).
pub fn lookup(id: &str) -> &'static Entry {
    CATALOGUE.iter().find(|e| e.id == id).unwrap_or(&GENERIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_self_service_redirects_with_has_an_entry() {
        for id in [
            "security_csrf_violation",
            "self_service_flow_expired",
            "self_service_flow_return_to_forbidden",
            "self_service_flow_disabled",
            "session_already_available",
            "session_refresh_required",
            "self_service_flow_rate_limited",
            "self_service_flow_busy",
            "session_revocation_list_full",
        ] {
            assert_eq!(lookup(id).id, id);
        }
        assert_eq!(lookup("<script>").id, "");
        assert_eq!(lookup("internal_server_error").title, "Something went wrong");
    }
}
