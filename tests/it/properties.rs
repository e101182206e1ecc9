//! Property tests: any answer gets exactly one catalog entry, any config text gets a config or
//! one clear error with a position — never a panic.

use openai_watch::catalog::{self, Expect};
use openai_watch::config::Config;
use openai_watch::redact;
use proptest::prelude::*;
use std::path::Path;

fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        "[a-z_ ]{0,30}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "invalid_api_key",
            "insufficient_quota",
            "rate_limit_exceeded",
            "server_is_overloaded",
            "slow_down",
            "model_not_found"
        ])
        .prop_map(serde_json::Value::from),
    ]
}

/// Error bodies shaped like the API's, with any field missing, null, numeric or odd.
fn error_body() -> impl Strategy<Value = Vec<u8>> {
    (json_scalar(), json_scalar(), json_scalar(), any::<bool>()).prop_map(
        |(code, kind, message, wrapped)| {
            let inner = serde_json::json!({"code": code, "type": kind, "message": message});
            let body = if wrapped {
                serde_json::json!({"error": inner})
            } else {
                inner
            };
            body.to_string().into_bytes()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_and_status_get_one_catalog_entry(status in 100u16..1000, body in prop::collection::vec(any::<u8>(), 0..2048)) {
        for expect in [Expect::List, Expect::Chat] {
            let v = catalog::classify(status, &body, expect);
            prop_assert!(catalog::entry(v.entry.id).is_some());
            if (200..300).contains(&status) && v.entry.is_ok() {
                prop_assert!(body.contains(&b'['), "ok needs a list in the body");
            }
        }
    }

    #[test]
    fn api_shaped_bodies_are_classified_by_their_fields(status in prop::sample::select(vec![400u16, 401, 403, 404, 429, 500, 502, 503, 504]), body in error_body()) {
        let v = catalog::classify(status, &body, Expect::Chat);
        prop_assert!(!v.entry.is_ok(), "an error body is never healthy");
        if status == 429 {
            let cat = v.entry.category.as_str();
            prop_assert!(matches!(cat, "rate_limit" | "quota" | "overload" | "auth" | "region" | "client_error" | "unknown" | "outage"));
        }
    }

    #[test]
    fn truncating_a_body_never_panics(cut in 0usize..400) {
        let body = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let v = catalog::classify(429, &body[..cut.min(body.len())], Expect::Chat);
        prop_assert!(matches!(v.entry.category.as_str(), "quota" | "rate_limit"));
    }

    #[test]
    fn masking_removes_every_sk_token(prefix in "[ -~]{0,40}", key in "[A-Za-z0-9_-]{20,60}", suffix in "[ -~]{0,40}") {
        let token = format!("sk-{key}");
        let masked = redact::clean_message(&format!("{prefix}{token}{suffix}"), &[]);
        prop_assert!(!masked.contains(&token));
        prop_assert!(masked.len() <= redact::MAX_MESSAGE_BYTES);
    }

    #[test]
    fn any_config_text_is_a_config_or_one_positioned_error(text in "[\\[\\]a-z_=\"0-9 .\\n{},:-]{0,300}") {
        match Config::parse(&text, Path::new("p.toml")) {
            Ok(c) => prop_assert!(!c.targets.is_empty()),
            Err(e) => {
                let line = e.to_string();
                prop_assert!(!line.contains('\n'), "one line: {line}");
                prop_assert!(line.starts_with("p.toml"));
            }
        }
    }

    #[test]
    fn mutated_valid_configs_never_panic(pos in 0usize..200, byte in any::<u8>()) {
        let good = "[[targets]]\nname = \"prod\"\nbase_url = \"https://api.openai.com/v1\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n";
        let mut bytes = good.as_bytes().to_vec();
        let at = pos % bytes.len();
        bytes[at] = byte;
        if let Ok(text) = String::from_utf8(bytes)
            && let Err(e) = Config::parse(&text, Path::new("m.toml"))
        {
            let line = e.to_string();
            prop_assert!(!line.contains('\n'), "{line}");
            prop_assert!(e.position.is_some(), "a position for {line}");
        }
    }
}
