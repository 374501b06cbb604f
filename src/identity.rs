//! Who and where this agent is: the resources every source reuses.
//!
//! - the agent: `herald.agent.<hostname>`, the resource of its own events;
//! - the host: `herald.host.<hostname>` (name, boot id, OS, kernel),
//!   related to every event with role `host`;
//! - the pod, inside Kubernetes (`POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`
//!   from the downward API): `herald.pod.<namespace>.<name>`, role `pod`.
//!
//! Read once at start-up; nothing here changes while the agent runs.

use std::collections::BTreeMap;

use crate::event::{RESOURCE_NAME, RelatedResource, Resource};

/// The agent's version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The resources that describe this agent and where it runs.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The host name used in resource ids.
    pub hostname: String,
    /// The agent's own resource (its lifecycle and heartbeat events).
    pub agent: Resource,
    /// The host, related with role `host`.
    pub host: RelatedResource,
    /// The pod, related with role `pod`, when running in Kubernetes.
    pub pod: Option<RelatedResource>,
    /// The kernel's boot id, when it can be read: it changes at every boot.
    pub boot_id: Option<String>,
}

impl Identity {
    /// Reads the host's identity. `hostname` overrides the system's;
    /// `labels` are added to the agent's resource; `env` reads the
    /// environment (the downward API variables).
    pub fn discover(
        hostname: Option<&str>,
        labels: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let hostname = hostname
            .map(str::to_owned)
            .or_else(system_hostname)
            .or_else(|| env("HOSTNAME"))
            .unwrap_or_else(|| "localhost".to_owned());
        let boot_id = read_trimmed("/proc/sys/kernel/random/boot_id");
        let mut host = RelatedResource::new(format!("herald.host.{hostname}"), "host")
            .with(RESOURCE_NAME, hostname.clone());
        if let Some(boot_id) = &boot_id {
            host.insert("herald.host.boot-id", boot_id.clone());
        }
        if let Some(os) = os_name() {
            host.insert("herald.host.os", os);
        }
        if let Some(kernel) = read_trimmed("/proc/sys/kernel/osrelease") {
            host.insert("herald.host.kernel", kernel);
        }
        let mut agent = Resource::new(format!("herald.agent.{hostname}"))
            .with(RESOURCE_NAME, format!("herald on {hostname}"))
            .with("herald.agent.version", VERSION);
        for (key, value) in labels {
            agent.insert(key.clone(), value.clone());
        }
        let pod = match (env("POD_NAMESPACE"), env("POD_NAME")) {
            (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
                let mut pod = RelatedResource::new(format!("herald.pod.{namespace}.{name}"), "pod")
                    .with(RESOURCE_NAME, name.clone())
                    .with("herald.pod.namespace", namespace);
                if let Some(node) = env("NODE_NAME").filter(|n| !n.is_empty()) {
                    pod.insert("herald.pod.node", node);
                }
                Some(pod)
            }
            _ => None,
        };
        Identity {
            hostname,
            agent,
            host,
            pod,
            boot_id,
        }
    }

    /// The related resources every event carries: the host, and the pod
    /// when there is one.
    pub fn related(&self) -> Vec<RelatedResource> {
        let mut related = vec![self.host.clone()];
        related.extend(self.pod.clone());
        related
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn system_hostname() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname").or_else(|| read_trimmed("/etc/hostname"))
}

/// `PRETTY_NAME` from os-release, e.g. "Debian GNU/Linux 12 (bookworm)".
fn os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| Some(std::env::consts::OS.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_resource_from_the_downward_api() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("web-7f9".to_owned()),
            "POD_NAMESPACE" => Some("shop".to_owned()),
            "NODE_NAME" => Some("node-3".to_owned()),
            _ => None,
        };
        let id = Identity::discover(Some("h1"), &BTreeMap::new(), &env);
        let pod = id.pod.clone().expect("in a pod");
        assert_eq!(pod.id(), "herald.pod.shop.web-7f9");
        assert_eq!(pod.role(), "pod");
        assert_eq!(pod.resource().get("herald.pod.node"), Some("node-3"));
        assert_eq!(id.related().len(), 2);
    }

    #[test]
    fn agent_and_host_resources() {
        let labels = BTreeMap::from([("team".to_owned(), "data".to_owned())]);
        let id = Identity::discover(Some("h1"), &labels, &|_| None);
        assert_eq!(id.agent.id(), "herald.agent.h1");
        assert_eq!(id.agent.get("team"), Some("data"));
        assert_eq!(id.host.id(), "herald.host.h1");
        assert_eq!(id.host.role(), "host");
        assert_eq!(id.host.resource().get(RESOURCE_NAME), Some("h1"));
        assert!(id.pod.is_none());
    }
}
