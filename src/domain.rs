//! The closed vocabularies that rows, the API and alerts carry: each one an enum that is
//! stored as its snake_case name (`sqlx::Type`), serialised the same way (serde), and guarded by
//! a CHECK constraint in the schema (migration 0004). No state is compared as a string.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a closed vocabulary: the enum, its stored names, `as_str`, `parse`, `ALL` and
/// `Display`, from one list, so that the names cannot drift between the three.
macro_rules! vocabulary {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(rename_all = "snake_case", type_name = "text")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Every stored name, in declaration order.
            pub const ALL_NAMES: &'static [&'static str] = &[$($text,)+];

            /// The stored and serialised name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value of a stored or configured name.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// The stable vocabulary of config, API, metrics and alerts (SPEC §5).
    pub enum Category {
        Ok = "ok",
        Auth = "auth",
        Region = "region",
        Quota = "quota",
        RateLimit = "rate_limit",
        Overload = "overload",
        Outage = "outage",
        ClientError = "client_error",
        Unknown = "unknown",
        /// A leading signal: the account is close to its rate limit (SPEC §13).
        Headroom = "headroom",
        /// A leading signal: answers are much slower than usual (SPEC §13).
        Slow = "slow",
        /// An agent of the fleet has stopped writing its heartbeat (SPEC §14): raised by the
        /// agents that are still running.
        Monitor = "monitor",
    }
}

impl Category {
    /// Leading signals: computed from answers that are otherwise healthy, detected apart from
    /// the failures (a healthy probe does not resolve them).
    pub fn is_signal(self) -> bool {
        matches!(self, Category::Headroom | Category::Slow)
    }

    /// Categories that pass on their own and open an incident only when they persist
    /// (`failure_threshold` in a row, or the flapping rule).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Category::Outage | Category::Overload | Category::RateLimit | Category::Unknown
        )
    }

    /// Categories whose open incident means the target cannot serve traffic at all.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            Category::Auth | Category::Region | Category::Quota | Category::Outage
        )
    }
}

vocabulary! {
    /// The probe kinds of SPEC §4.
    pub enum ProbeKind {
        /// `GET {base_url}/models`: free; sees key, region and outage problems.
        Models = "models",
        /// `POST {base_url}/chat/completions` with one output token: sees quota and overload.
        Chat = "chat",
        /// `POST {base_url}/responses`, the API OpenAI now recommends.
        Responses = "responses",
        /// `POST {base_url}/chat/completions` with `stream: true`: time to first token.
        ChatStream = "chat_stream",
        /// `POST {base_url}/embeddings` with the cheapest embedding model.
        Embeddings = "embeddings",
    }
}

impl ProbeKind {
    /// Whether the probe asks a model for something (and so takes `model`).
    pub fn takes_model(self) -> bool {
        !matches!(self, ProbeKind::Models)
    }

    /// Whether the probe asks for a chat completion (and so takes `max_tokens_field`).
    pub fn is_chat(self) -> bool {
        matches!(self, ProbeKind::Chat | ProbeKind::ChatStream)
    }
}

vocabulary! {
    /// What an outbox event says about its incident (SPEC §7).
    pub enum EventKind {
        Firing = "firing",
        Reminder = "reminder",
        Resolved = "resolved",
    }
}

vocabulary! {
    /// Where a delivery of an event to one channel stands.
    pub enum DeliveryState {
        Pending = "pending",
        Sent = "sent",
        Failed = "failed",
        /// Not sent: a silence or a maintenance window held when it was due.
        Suppressed = "suppressed",
    }
}

vocabulary! {
    /// Why no HTTP answer arrived.
    pub enum TransportErrorKind {
        Timeout = "timeout",
        Dns = "dns",
        Refused = "refused",
        Reset = "reset",
        Tls = "tls",
        Connect = "connect",
    }
}

vocabulary! {
    /// A target as the status page and `status` summarise it.
    pub enum TargetState {
        Ok = "ok",
        Degraded = "degraded",
        Down = "down",
        /// Never probed yet.
        Unknown = "unknown",
    }
}

impl TargetState {
    /// The worst of the states (down > degraded > ok); `Unknown` counts as ok for the overall
    /// verdict, since nothing is known to be wrong.
    pub fn overall<'a>(states: impl IntoIterator<Item = &'a TargetState>) -> TargetState {
        let mut worst = TargetState::Ok;
        for s in states {
            match s {
                TargetState::Down => return TargetState::Down,
                TargetState::Degraded => worst = TargetState::Degraded,
                TargetState::Ok | TargetState::Unknown => {}
            }
        }
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_value() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        for k in TransportErrorKind::ALL {
            assert_eq!(TransportErrorKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Category::parse("rate-limit"), None);
    }

    #[test]
    fn the_overall_state_is_the_worst_known_one() {
        use TargetState::*;
        assert_eq!(TargetState::overall(&[Ok, Unknown]), Ok);
        assert_eq!(TargetState::overall(&[Ok, Degraded, Unknown]), Degraded);
        assert_eq!(TargetState::overall(&[Degraded, Down, Ok]), Down);
    }
}
