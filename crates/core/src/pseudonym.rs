//! Keyed references for card ids (and any KPM identifier) wherever a person reads them.
//!
//! Card ids are personal data. Machines may carry them (the `pantau.alerts` topic, the
//! DLQ); what people read (the alert store behind Grafana, Tikor notifications, the
//! monthly report, a terminal) names a card only as `P` + 16 hex digits of
//! HMAC-SHA256(`PANTAU_PSEUDONYM_KEY`, card id): stable, so one card is one reference
//! everywhere, and resolvable by the bank that holds the key. Without the key there are
//! no references: every command that makes them refuses to start, unless told
//! `--allow-unkeyed-references` (tests, demos), where the references are unkeyed hashes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::Alert;

/// The environment variable holding the key.
pub const KEY_ENV: &str = "PANTAU_PSEUDONYM_KEY";

/// Entity types that name a person or their card.
pub fn names_a_person(entity_type: &str) -> bool {
    PERSON_ENTITY_TYPES.contains(&entity_type)
}

/// The entity types whose ids name a person (a card, a KPM).
pub const PERSON_ENTITY_TYPES: [&str; 2] = ["card", "kpm"];

/// What every reference looks like (`P` and 16 hex digits), for SQL's `~`: a card id
/// never does.
pub const REFERENCE_PATTERN: &str = "^P[0-9a-f]{16}$";

/// No key where references must be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is not set: card references cannot be made. Set it to the key agreed with the bank (any length), or pass --allow-unkeyed-references for test data"
)]
pub struct MissingKey(pub String);

/// The key card references are made with. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("keyed", &!self.key.is_empty())
            .finish()
    }
}

impl Pseudonyms {
    pub fn new(key: &[u8]) -> Pseudonyms {
        Pseudonyms { key: key.to_vec() }
    }

    /// The key from `variable` if it is set: for what may match a reference but need
    /// not make one (a snooze list naming a card by the reference people see).
    pub fn from_env_if_set(variable: &str) -> Option<Pseudonyms> {
        std::env::var(variable)
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| Pseudonyms::new(k.as_bytes()))
    }

    /// The key from `variable` (normally [`KEY_ENV`]); missing or empty is an error
    /// unless unkeyed references (hashes anyone can recompute: test data only) are
    /// allowed.
    pub fn from_env(variable: &str, allow_unkeyed: bool) -> Result<Pseudonyms, MissingKey> {
        let key = std::env::var(variable).unwrap_or_default();
        if key.is_empty() && !allow_unkeyed {
            return Err(MissingKey(variable.to_owned()));
        }
        Ok(Pseudonyms::new(key.as_bytes()))
    }

    /// A card as a person may read it: `P` and 16 hex digits of HMAC-SHA256(key, id).
    pub fn reference(&self, card_id: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(card_id.as_bytes());
        format!(
            "P{}",
            crate::text::hex_prefix(&mac.finalize().into_bytes(), 16)
        )
    }

    /// An alert as a person may read it: an entity that names a person by its
    /// reference. Title, summary and evidence never hold the id (`pantau rules lint`
    /// refuses rules that would put it there).
    pub fn for_people(&self, mut alert: Alert) -> Alert {
        if names_a_person(&alert.entity_type) {
            alert.entity_id = self.reference(&alert.entity_id);
        }
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_keyed_stable_and_never_the_id() {
        let p = Pseudonyms::new(b"k");
        assert_eq!(p.reference("K1"), p.reference("K1"));
        assert_ne!(p.reference("K1"), Pseudonyms::new(b"other").reference("K1"));
        assert_eq!(p.reference("K1").len(), 17);
        assert!(!p.reference("K1").contains("K1"));
    }

    #[test]
    fn a_missing_key_is_an_error_unless_allowed_and_the_key_never_shows() {
        let unset = "PANTAU_TEST_KEY_THAT_IS_NOT_SET";
        let e = Pseudonyms::from_env(unset, false).unwrap_err();
        assert!(e.to_string().contains(unset), "{e}");
        assert!(Pseudonyms::from_env(unset, true).is_ok());
        let debug = format!("{:?}", Pseudonyms::new(b"s3cret-key"));
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
