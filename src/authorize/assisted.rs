//! The assisted token flow (draft-ideskog-assisted-token, as Curity offers it): what `/assisted-token`
//! answers a single-page application's frame or popup. Pure: the HTTP layer fetches the client, the
//! session and the decision, and carries out the answer.
//!
//! The frame asks with `prompt=none` semantics: it never shows a page, so whatever the shared decision
//! (`next_step`) still needs from the user becomes an error the application reacts to by opening the
//! popup, which asks with the normal pages.

use projections::clients::Client;

use super::next_step::Step;
use crate::oauth::OAuthError;

/// Where the page runs, from the `mode` parameter: `popup` for the window the application opens when the
/// user must sign in or consent; anything else (the default) for the hidden frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A hidden iframe: no page is ever shown; posts to `window.parent`.
    Frame,
    /// A popup: signs in and asks consent on this server's pages, then posts to `window.opener`.
    Popup,
}

impl Mode {
    pub fn parse(value: Option<&str>) -> Mode {
        match value {
            Some("popup") => Mode::Popup,
            _ => Mode::Frame,
        }
    }
}

/// What the page posts to the application (or, in a popup, the step to take first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Issue an access token and post it.
    Token,
    /// Post `{error: "login_required"}`: nobody is signed in, or the sign-in is too old.
    LoginRequired,
    /// Post `{error: "consent_required"}`: the user has not approved what is asked.
    ConsentRequired,
    /// Post `{error: "interaction_required"}`: a second factor is due.
    InteractionRequired,
    /// Post this error (`access_denied`, `invalid_scope`, …).
    Error(OAuthError),
}

impl Answer {
    /// The `error` the page posts; `None` for a token.
    pub fn error_code(&self) -> Option<String> {
        match self {
            Answer::Token => None,
            Answer::LoginRequired => Some("login_required".into()),
            Answer::ConsentRequired => Some("consent_required".into()),
            Answer::InteractionRequired => Some("interaction_required".into()),
            Answer::Error(e) => Some(e.to_string()),
        }
    }
}

/// The origins a client's page may be framed by and post to, or why `/assisted-token` refuses it with a
/// page of its own (there is no origin to trust, so nothing is posted): an unknown or disabled client, a
/// client without the assisted token grant type, a confidential client, a client without origins.
pub fn origins(client: Option<&Client>) -> Result<&[String], OAuthError> {
    let Some(client) = client.filter(|c| c.is_enabled()) else {
        return Err(OAuthError::InvalidClient("unknown or disabled client".into()));
    };
    let spec = &client.spec;
    if !spec
        .grant_types
        .iter()
        .any(|g| g == crate::grants::ASSISTED_TOKEN)
    {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the assisted token flow".into(),
        ));
    }
    if spec.token_endpoint_auth_method != "none" {
        return Err(OAuthError::UnauthorizedClient(
            "the assisted token flow is for public clients".into(),
        ));
    }
    if spec.allowed_origins.is_empty() {
        return Err(OAuthError::UnauthorizedClient(
            "this client registered no allowed_origins".into(),
        ));
    }
    Ok(&spec.allowed_origins)
}

/// What the frame answers, from the step the authorization endpoint's decision reached for the same
/// request asked with `prompt=none`. The steps that would show a page cannot come with `prompt=none`;
/// mapped all the same, they ask the application for the popup.
pub fn frame_answer(step: Step) -> Answer {
    match step {
        Step::Issue => Answer::Token,
        Step::SignIn { .. } => Answer::LoginRequired,
        Step::SecondFactor => Answer::InteractionRequired,
        Step::Consent => Answer::ConsentRequired,
        Step::Fail(OAuthError::LoginRequired(_)) => Answer::LoginRequired,
        Step::Fail(OAuthError::ConsentRequired(_)) => Answer::ConsentRequired,
        Step::Fail(OAuthError::InteractionRequired(_)) => Answer::InteractionRequired,
        Step::Fail(other) => Answer::Error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::next_step;
    use crate::authorize::request::Prompt;
    use crate::grants::GrantType;
    use projections::event::ClientSpec;
    use serde_json::Value;

    fn client(grants: &[&str], method: &str, origins: &[&str]) -> Client {
        let spec = ClientSpec {
            client_id: "spa".into(),
            name: "SPA".into(),
            grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
            token_endpoint_auth_method: method.into(),
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..ClientSpec::default()
        };
        Client {
            spec,
            disabled: None,
            registered_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_a_public_client_with_the_grant_and_origins_gets_the_page() {
        let at = crate::grants::ASSISTED_TOKEN;
        let o = "https://app.example";
        // given the client, then the origins or the page's error
        type Then = Result<Vec<String>, &'static str>;
        let table: [(Option<Client>, Then); 5] = [
            (Some(client(&[at], "none", &[o])), Ok(vec![o.to_owned()])),
            (None, Err("invalid_client")),
            (
                Some(client(&["implicit"], "none", &[o])),
                Err("unauthorized_client"),
            ),
            (
                Some(client(&[at], "client_secret_basic", &[o])),
                Err("unauthorized_client"),
            ),
            (Some(client(&[at], "none", &[])), Err("unauthorized_client")),
        ];
        for (given, then) in table {
            let got = origins(given.as_ref())
                .map(<[String]>::to_vec)
                .map_err(|e| e.to_string());
            assert_eq!(got, then.map_err(str::to_owned), "{given:?}");
        }
    }

    #[test]
    fn the_frame_answers_what_the_decision_still_needs() {
        // given the step the shared decision reached, then what the frame posts
        let table = [
            (Step::Issue, Answer::Token),
            (
                Step::Fail(OAuthError::LoginRequired("x".into())),
                Answer::LoginRequired,
            ),
            (
                Step::Fail(OAuthError::ConsentRequired("x".into())),
                Answer::ConsentRequired,
            ),
            (
                Step::Fail(OAuthError::InteractionRequired("x".into())),
                Answer::InteractionRequired,
            ),
            (
                Step::Fail(OAuthError::AccessDenied("x".into())),
                Answer::Error(OAuthError::AccessDenied("x".into())),
            ),
            (Step::SignIn { again: true }, Answer::LoginRequired),
            (Step::SecondFactor, Answer::InteractionRequired),
            (Step::Consent, Answer::ConsentRequired),
        ];
        for (given, then) in table {
            assert_eq!(frame_answer(given.clone()), then, "{given:?}");
        }
        assert_eq!(
            Answer::ConsentRequired.error_code().as_deref(),
            Some("consent_required")
        );
        assert_eq!(
            Answer::Error(OAuthError::InvalidScope("x".into()))
                .error_code()
                .as_deref(),
            Some("invalid_scope")
        );
        assert_eq!(Answer::Token.error_code(), None);
    }

    #[test]
    fn a_frame_without_a_session_answers_login_required() {
        let details = Value::Null;
        let ask = next_step::Ask {
            client_id: "spa",
            grant_type: GrantType::AssistedToken,
            scope: None,
            resource: None,
            authorization_details: &details,
            prompt: Prompt {
                none: true,
                ..Prompt::default()
            },
            max_age: None,
            acr_values: &[],
            created_at: 0,
        };
        let step = next_step::authentication(&ask, None, None, 0);
        assert_eq!(step.map(frame_answer), Some(Answer::LoginRequired));
        assert_eq!(Mode::parse(Some("popup")), Mode::Popup);
        assert_eq!(Mode::parse(None), Mode::Frame);
    }
}
