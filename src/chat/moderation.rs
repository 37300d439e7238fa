//! Pure moderation rules: input validation, the word filter and the token bucket. No clocks
//! (callers pass `Instant`s), no locks, no IO, so every rule is tested in place.

use std::time::{Duration, Instant};

/// Why a nick or a message was refused before it reached the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    EmptyNick,
    NickTooLong { max: usize },
    NickCharacters,
    NickBlocked,
    EmptyText,
    TextTooLong { max: usize },
}

impl Invalid {
    /// The reason shown to the client in the JSON error.
    pub fn reason(&self) -> String {
        match self {
            Invalid::EmptyNick => "nick is empty".into(),
            Invalid::NickTooLong { max } => format!("nick is longer than {max} characters"),
            Invalid::NickCharacters => {
                "nick may only contain letters, digits, spaces and _ - . characters".into()
            }
            Invalid::NickBlocked => "nick contains a blocked word".into(),
            Invalid::EmptyText => "text is empty".into(),
            Invalid::TextTooLong { max } => format!("text is longer than {max} characters"),
        }
    }
}

/// Checks and normalises a nick: trimmed, 1..=max characters of letters, digits, spaces and
/// `_ - .`, no blocked word.
pub fn clean_nick(nick: &str, max: usize, blocked: &[String]) -> Result<String, Invalid> {
    let nick = nick.trim();
    if nick.is_empty() {
        return Err(Invalid::EmptyNick);
    }
    if nick.chars().count() > max {
        return Err(Invalid::NickTooLong { max });
    }
    if !nick
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
    {
        return Err(Invalid::NickCharacters);
    }
    if mask_blocked(nick, blocked) != nick {
        return Err(Invalid::NickBlocked);
    }
    Ok(nick.to_string())
}

/// Checks and normalises a message: line breaks and tabs become spaces, other control and
/// bidi-override characters are dropped, the result is trimmed, 1..=max characters, and blocked
/// words are masked.
pub fn clean_text(text: &str, max: usize, blocked: &[String]) -> Result<String, Invalid> {
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            // Bidirectional overrides and isolates can make text render misleadingly.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => None,
            c => Some(c),
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return Err(Invalid::EmptyText);
    }
    if cleaned.chars().count() > max {
        return Err(Invalid::TextTooLong { max });
    }
    Ok(mask_blocked(cleaned, blocked))
}

/// Replaces every whole-word, case-insensitive occurrence of a blocked word with asterisks
/// ("Scunthorpe" is not masked for "cunt"). Hand-written because the word lists are tiny and a
/// profanity crate would bring its own list we do not want; config words are the only source.
pub fn mask_blocked(text: &str, blocked: &[String]) -> String {
    if blocked.is_empty() {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars.iter().map(|c| lower_char(*c)).collect();
    for word in blocked {
        let w: Vec<char> = word.trim().chars().map(lower_char).collect();
        if w.is_empty() || w.len() > lower.len() {
            continue;
        }
        let mut i = 0;
        while i + w.len() <= lower.len() {
            let boundary_before = i == 0 || !lower[i - 1].is_alphanumeric();
            let end = i + w.len();
            let boundary_after = end == lower.len() || !lower[end].is_alphanumeric();
            if boundary_before && boundary_after && lower[i..end] == w[..] {
                for c in &mut chars[i..end] {
                    *c = '*';
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
    chars.into_iter().collect()
}

/// Lower-cases one character, keeping it one character (so indices line up with the original).
fn lower_char(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
    }

    /// Whether a token is available now, without taking it; `Err(wait)` otherwise.
    pub fn check(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Takes a token (after a successful [`TokenBucket::check`]).
    pub fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Whether the bucket is full again (it can be forgotten).
    pub fn is_full(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.tokens >= burst
    }
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn masks_whole_words_case_insensitively() {
        let b = words(&["darn", "heck"]);
        let cases = [
            ("darn it", "**** it"),
            ("DARN it", "**** it"),
            ("oh, Darn!", "oh, ****!"),
            ("darnation", "darnation"),
            ("what the heck, darn", "what the ****, ****"),
            ("nothing here", "nothing here"),
            ("Ärger darn", "Ärger ****"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_blocked(input, &b), want, "{input}");
        }
        assert_eq!(mask_blocked("darn", &[]), "darn");
    }

    #[test]
    fn nick_rules() {
        let b = words(&["troll"]);
        assert_eq!(clean_nick("  ann ", 8, &b), Ok("ann".into()));
        assert_eq!(clean_nick("José_1", 8, &b), Ok("José_1".into()));
        assert_eq!(clean_nick("   ", 8, &b), Err(Invalid::EmptyNick));
        assert_eq!(
            clean_nick("123456789", 8, &b),
            Err(Invalid::NickTooLong { max: 8 })
        );
        assert_eq!(clean_nick("<b>", 8, &b), Err(Invalid::NickCharacters));
        assert_eq!(
            clean_nick("a\u{202E}b", 8, &b),
            Err(Invalid::NickCharacters)
        );
        assert_eq!(clean_nick("Troll", 8, &b), Err(Invalid::NickBlocked));
    }

    #[test]
    fn text_rules() {
        let b = words(&["darn"]);
        assert_eq!(clean_text(" hi\nthere ", 20, &b), Ok("hi there".into()));
        assert_eq!(clean_text("a\u{0}b\u{202E}c", 20, &b), Ok("abc".into()));
        assert_eq!(clean_text(" \n ", 20, &b), Err(Invalid::EmptyText));
        assert_eq!(
            clean_text("ééééé", 4, &b),
            Err(Invalid::TextTooLong { max: 4 })
        );
        assert_eq!(clean_text("ééééé", 5, &b), Ok("ééééé".into()));
        assert_eq!(clean_text("darn", 5, &b), Ok("****".into()));
        // Markup is kept as text; the page renders it with textContent.
        assert_eq!(
            clean_text("<img src=x onerror=alert(1)>", 50, &b),
            Ok("<img src=x onerror=alert(1)>".into())
        );
    }

    #[test]
    fn bucket_allows_burst_then_refills() {
        let t0 = Instant::now();
        let (rate, burst) = (2.0, 3.0);
        let mut b = TokenBucket::full(burst, t0);
        for _ in 0..3 {
            assert!(b.check(rate, burst, t0).is_ok());
            b.take();
        }
        let wait = b.check(rate, burst, t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert_eq!(retry_after_seconds(wait), 1);
        assert!(b
            .check(rate, burst, t0 + Duration::from_millis(500))
            .is_ok());
        assert!(!b.is_full(rate, burst, t0 + Duration::from_millis(500)));
        assert!(b.is_full(rate, burst, t0 + Duration::from_secs(2)));
        assert_eq!(retry_after_seconds(Duration::from_millis(2100)), 3);
    }
}
