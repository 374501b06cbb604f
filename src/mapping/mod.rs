//! Turns observations into events.
//!
//! The mapper owns the meaning of an observation: its event name, the
//! resource it is about, the related resources, the payload, and the id.
//! Every observation kind has a built-in default mapping, so an agent with
//! no mapping rules still sends sensible events. The mapper validates each
//! event and serializes it exactly once; the bytes it returns are what the
//! queue stores and the sink sends. It does not read sources or send.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{self, Event, EventError};
use crate::identity::Identity;
use crate::observation::{Observation, OnDurable};

/// An event ready for the queue.
pub struct Mapped {
    /// The event's id.
    pub id: Uuid,
    /// The event's JSON, validated and within the size limit.
    pub json: Vec<u8>,
    /// The source's callback for when the event is durable.
    pub on_durable: Option<OnDurable>,
}

/// Why an observation did not become an event.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {kind} observation did not make a valid event: {error}")]
pub struct MapError {
    /// The source that saw it.
    pub source_name: String,
    /// Its kind.
    pub kind: String,
    /// The rule the event broke.
    pub error: EventError,
}

/// Turns observations into validated, serialized events.
pub struct Mapper {
    identity: Identity,
}

impl Mapper {
    /// A mapper that places events on this agent's resources.
    pub fn new(identity: Identity) -> Self {
        Mapper { identity }
    }

    /// Maps one observation with its built-in default.
    ///
    /// # Errors
    /// [`MapError`] when the event would break a rule of the format (for
    /// example a payload over the size limit); the caller counts it and
    /// carries on.
    pub fn map(&self, mut observation: Observation) -> Result<Mapped, MapError> {
        let on_durable = observation.on_durable.take();
        let event = self.default_event(&observation);
        match event.to_json() {
            Ok(json) => Ok(Mapped {
                id: event.id,
                json,
                on_durable,
            }),
            Err(error) => Err(MapError {
                source_name: observation.source.to_string(),
                kind: observation.kind.to_string(),
                error,
            }),
        }
    }

    /// The built-in mapping: `herald.<kind>` about the agent itself, with
    /// the observation's fields as the payload and the host (and pod) as
    /// related resources.
    fn default_event(&self, observation: &Observation) -> Event {
        let payload: Map<String, Value> = observation
            .fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let id = match &observation.identity {
            Some(identity) => event::derived_id(&observation.source, identity),
            None => event::fresh_id(),
        };
        Event {
            occurred: observation.observed_at,
            event: format!("herald.{}", observation.kind),
            resource: self.identity.agent.clone(),
            related: self.identity.related(),
            payload: Value::Object(payload),
            id,
            follows: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn mapper() -> Mapper {
        Mapper::new(Identity::discover(Some("h1"), &BTreeMap::new(), &|_| None))
    }

    #[test]
    fn heartbeat_maps_to_an_agent_event() {
        let obs = Observation::new(Arc::from("hb"), "agent.heartbeat").with("uptime_seconds", 5);
        let mapped = mapper().map(obs).expect("valid");
        let json: Value = serde_json::from_slice(&mapped.json).expect("json");
        assert_eq!(json["event"], "herald.agent.heartbeat");
        assert_eq!(json["resource"]["prefect.resource.id"], "herald.agent.h1");
        assert_eq!(json["related"][0]["prefect.resource.role"], "host");
        assert_eq!(json["payload"]["uptime_seconds"], 5);
        assert_eq!(json["id"], mapped.id.to_string());
    }

    #[test]
    fn identity_gives_a_stable_id() {
        let make = || {
            let mut obs = Observation::new(Arc::from("hb"), "agent.heartbeat");
            obs.identity = Some(b"same".to_vec());
            mapper().map(obs).expect("valid").id
        };
        assert_eq!(make(), make());
    }

    #[test]
    fn an_oversized_event_is_an_error_not_a_panic() {
        let obs = Observation::new(Arc::from("hb"), "agent.heartbeat")
            .with("big", "x".repeat(event::MAX_EVENT_BYTES));
        let error = mapper().map(obs).err().expect("too large");
        assert_eq!(error.error.rule(), "too_large");
        assert!(error.to_string().contains("source hb"), "{error}");
    }
}
