//! The `[debate]` section: viewers' questions (how long, how often, who may ask) for the
//! debate mode of `chat::questions`. Validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Longest speaking timer an admin can start, in seconds (also the top of its range here).
pub const MAX_TIMER_SECONDS: u64 = 4 * 3600;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DebateConfig {
    /// Longest question, in characters (after trimming); longer ones are refused with 413.
    pub max_question_chars: usize,
    /// One question per viewer (signed-in identity, else address) this often; 0: no limit.
    pub seconds_between_questions: u64,
    /// Only signed-in viewers may ask and vote (when a sign-in provider is enabled).
    pub require_sign_in: bool,
}

impl Default for DebateConfig {
    fn default() -> Self {
        Self {
            max_question_chars: 300,
            seconds_between_questions: 30,
            require_sign_in: false,
        }
    }
}

impl DebateConfig {
    /// `require_sign_in` as it applies: only while some sign-in provider is enabled (else
    /// nobody could ask at all).
    pub fn sign_in_required(&self, auth: &super::AuthConfig) -> bool {
        self.require_sign_in && (auth.mastodon.enabled || auth.x.enabled || auth.bluesky.enabled)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=2000).contains(&self.max_question_chars) {
            return Err(invalid(
                "debate.max_question_chars",
                self.max_question_chars.to_string(),
                "1 to 2000",
            ));
        }
        if self.seconds_between_questions > 86_400 {
            return Err(invalid(
                "debate.seconds_between_questions",
                self.seconds_between_questions.to_string(),
                "0 to 86400",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_key() {
        assert!(DebateConfig::default().validate().is_ok());
        let e = DebateConfig {
            max_question_chars: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("debate.max_question_chars"), "{e}");
        let e = DebateConfig {
            seconds_between_questions: 100_000,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("debate.seconds_between_questions"), "{e}");
    }
}
