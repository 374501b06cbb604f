//! Turns observations into events.
//!
//! The mapper owns the meaning of an observation: its event name, the
//! resource it is about, the related resources, the payload, the id and
//! `follows`. It validates each event and writes its JSON exactly once;
//! the bytes it returns are what the queue stores and the sink sends. It
//! does not read sources, queue or send.
//!
//! # Evaluation order
//! The `[[mappings]]` rules are tried in file order. A rule applies when
//! its `source` and `kind` patterns match and every `when` condition
//! holds; then:
//! - `drop = true`: the observation is dropped (counted), nothing more;
//! - otherwise the rule builds its event and evaluation stops: the first
//!   match wins. With `continue = true` the event is kept and evaluation
//!   goes on, so one observation can make several events (each further
//!   one gets an id derived from the rule's name too), and the built-in
//!   default still applies when no later rule stops it;
//! - `sample` / `max_per_second` may hold the match back: counted as
//!   suppressed, reported by [`Mapper::suppressed_observation`], and
//!   the observation goes no further (a `continue` rule's goes on);
//! - a rule that cannot build its event (a value missing at run time with
//!   no `default`, or an event breaking a rule of the format) is counted as
//!   unmapped and skipped, as if it had not matched, so the observation
//!   ends at a later rule or at the built-in default: never lost, never
//!   half-built.
//!
//! When no rule stops it, the kind's built-in default maps it: a `line`
//! becomes `herald.log.line` on the file's resource
//! `herald.file.<hostname>:<path>` with payload `line`, `offset`,
//! `truncated` and the fields of its parsed JSON; a `file.*` lifecycle
//! observation becomes `herald.<kind>` on the same file resource; any other
//! kind becomes `herald.<kind>` on the agent's resource. Those two take the
//! observation's fields as payload. The host, the agent (unless it is the
//! event's own resource) and the pod are related to every event.
//!
//! # Speed
//! Rules are compiled at load (regexes built, templates parsed, every
//! field resolved). For each (source, kind) pair the applicable rules are
//! worked out once. The top-level regexes of all rules that test the same
//! field are also compiled into one multi-pattern regex: one pass over the
//! line tells which rules can match at all, so a hundred rules cost about
//! one scan, and only a rule that can match runs its own regex for
//! captures. Events are written straight into their buffer (see
//! `build.rs`), with no intermediate `serde_json::Value`.

mod build;
mod condition;
mod fields;
mod follows;
pub mod json;
pub mod kinds;
mod limit;
mod literal;
mod rule;
mod spans;
mod template;
pub mod testing;
mod time;

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{self, EventError};
use crate::identity::Identity;
use crate::observation::{Observation, OnDurable};
use build::{Base, Build, Failure, Flavor, Plan, Scratch};
use condition::{Condition, Eval, RegexState};
use fields::{Captured, Root, Scope};
use follows::Follows;
use limit::Limiter;

pub use follows::StateError;
pub use rule::{Rule, read_mappings};
pub use template::{Template, TemplateError};

/// The source name of the agent's own observations (lifecycle, heartbeat
/// of the agent itself, suppression reports).
pub const AGENT_SOURCE: &str = "agent";

/// The checked `[[mappings]]` and what the mapper adds to every event.
#[derive(Clone, Debug, Default)]
pub struct MappingConfig {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// `[agent.labels]`, added to the resource of every event.
    pub labels: BTreeMap<String, String>,
}

/// An event ready for the queue.
pub struct Mapped {
    /// The event's id.
    pub id: Uuid,
    /// The event's JSON, validated and within the size limit (in the
    /// queue's format after [`Mapper::share_repeated_parts`]). Events
    /// share larger blocks of memory (see [`Arena`]), so that one event
    /// costs no allocation of its own.
    pub json: Bytes,
    /// The source's callback for when the event is durable. When one
    /// observation makes several events, only the last carries it: the
    /// queue is FIFO, so the last being durable means all are.
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

/// What the mapper did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Events built.
    pub mapped: u64,
    /// Times a rule matched but could not build its event (a missing
    /// value without a default, or an invalid event), so a later rule or
    /// the built-in default took the observation.
    pub unmapped: u64,
    /// Observations dropped by a `drop = true` rule.
    pub dropped: u64,
    /// Matches held back by `sample` or `max_per_second`.
    pub suppressed: u64,
    /// `occurred` values that did not parse, so the observed time was used.
    pub occurred_failures: u64,
}

/// A rule with what the mapper needs to run it.
struct Compiled {
    rule: Rule,
    /// Its plan for each [`Flavor`] of kind, by [`Flavor::index`].
    plans: Vec<Plan>,
    limiter: Limiter,
    regexes: Vec<RegexState>,
    /// (local regex, prefilter set, pattern) for each top-level regex the
    /// prefilter decides.
    prefiltered: Vec<(usize, usize, PatternID)>,
    unmapped: u64,
}

/// One multi-pattern regex over one field, shared by the rules that test
/// it.
struct PrefilterSet {
    field: fields::FieldRef,
    regex: Regex,
    cache: regex_automata::meta::Cache,
    /// This observation's result, once computed.
    matched: PatternSet,
    done: bool,
}

/// The rules that apply to one (source, kind) pair.
struct Route {
    source: Arc<str>,
    kind: Box<str>,
    flavor: Flavor,
    rules: Box<[usize]>,
}

/// How many (source, kind) pairs are remembered; more are recomputed.
const ROUTES: usize = 64;

/// Turns observations into validated, serialized events.
pub struct Mapper {
    hostname: Box<str>,
    rules: Vec<Compiled>,
    /// The built-in plan of each [`Flavor`], by [`Flavor::index`].
    defaults: Vec<Plan>,
    /// The kinds' own resources, by [`Flavor::Resource`] index.
    specs: Vec<&'static kinds::ResourceSpec>,
    sets: Vec<PrefilterSet>,
    routes: Vec<Route>,
    follows: Follows,
    captured: Captured,
    scratch: Scratch,
    stats: MapStats,
    /// Observations since the follows state was last offered a flush.
    since_flush_check: u32,
    /// Where events are built, and kept.
    arena: Arena,
}

/// Events side by side in shared blocks: each event's [`Bytes`] is a slice
/// of a block, and a block is freed once its last event is dropped. One
/// allocation serves hundreds of events, and dropping an event is a
/// reference count. Used-up blocks are remembered and taken again once
/// every event in them is gone (they empty in about the order they were
/// filled), so a steady stream reuses the same few blocks instead of
/// making the allocator cut fresh ones.
#[derive(Default)]
struct Arena {
    /// The block being filled; `None` before the first event.
    block: Option<BytesMut>,
    /// Used-up blocks, oldest first.
    spent: std::collections::VecDeque<BytesMut>,
    /// Where the block's free room started when it was handed out: an
    /// event that did not fit moved it into an allocation of its own.
    start: usize,
}

/// Bytes per block: a few hundred typical events.
const ARENA_BLOCK: usize = 256 * 1024;
/// Used-up blocks remembered for reuse; past that, the oldest is left to
/// be freed when its events are.
const ARENA_SPENT: usize = 48;

/// Room a block must have left to take the next event. A larger event
/// moves into an allocation of its own as it is written.
const ARENA_ROOM: usize = 4096;

impl Arena {
    /// Where the next event is written: the current block, or a new one
    /// when it is nearly full. Take the event with [`Arena::take`], or
    /// `clear` the block to drop what was written.
    fn block(&mut self) -> &mut BytesMut {
        if self
            .block
            .as_ref()
            .is_none_or(|b| b.capacity() < ARENA_ROOM)
        {
            self.next_block(ARENA_ROOM);
        }
        // There is one (made above if there was none).
        let block = self.block.get_or_insert_with(BytesMut::new);
        self.start = block.as_ptr() as usize;
        block
    }

    /// The event just written into the block.
    fn take(&mut self) -> Bytes {
        let Some(block) = &mut self.block else {
            return Bytes::new();
        };
        let event = block.split().freeze();
        if event.as_ptr() as usize != self.start {
            // It outgrew the block: what is left of its allocation is no
            // block to reuse.
            self.block = None;
        }
        event
    }

    fn next_block(&mut self, need: usize) -> &mut BytesMut {
        if let Some(spent) = self.block.take() {
            self.spent.push_back(spent);
            if self.spent.len() > ARENA_SPENT {
                self.spent.pop_front();
            }
        }
        let reused = need <= ARENA_BLOCK
            && self
                .spent
                .front_mut()
                .is_some_and(|oldest| oldest.try_reclaim(ARENA_BLOCK));
        let block = if reused { self.spent.pop_front() } else { None };
        self.block
            .insert(block.unwrap_or_else(|| BytesMut::with_capacity(ARENA_BLOCK.max(need))))
    }
}

impl Mapper {
    /// A mapper for these rules, placing events on this agent's resources,
    /// with its `follows` chains kept under `state_dir` (in memory only
    /// when `None`).
    pub fn new(identity: Identity, config: &MappingConfig, state_dir: Option<&Path>) -> Mapper {
        let specs = kinds::resource_specs();
        let base = Base {
            identity: &identity,
            labels: &config.labels,
            specs: &specs,
        };
        let defaults = Flavor::all(specs.len())
            .map(|f| base.default_plan(f))
            .collect();
        let mut rules: Vec<Compiled> = config
            .rules
            .iter()
            .map(|rule| Compiled {
                plans: Flavor::all(specs.len())
                    .map(|f| base.rule_plan(rule, f))
                    .collect(),
                limiter: Limiter::new(rule.sample, rule.max_per_second),
                regexes: Vec::new(),
                prefiltered: Vec::new(),
                unmapped: 0,
                rule: rule.clone(),
            })
            .collect();
        for compiled in &mut rules {
            let mut states: Vec<Option<RegexState>> =
                (0..compiled.rule.regexes).map(|_| None).collect();
            visit_regexes(&compiled.rule.when, &mut |r| {
                if let Some(slot) = states.get_mut(r.local) {
                    *slot = Some(RegexState::new(&r.regex));
                }
            });
            compiled.regexes = states.into_iter().flatten().collect();
        }
        let sets = build_prefilter(&mut rules);
        Mapper {
            hostname: identity.hostname.as_str().into(),
            rules,
            defaults,
            specs,
            sets,
            routes: Vec::new(),
            follows: Follows::load(state_dir),
            captured: Captured::default(),
            scratch: Scratch::default(),
            stats: MapStats::default(),
            since_flush_check: 0,
            arena: Arena::default(),
        }
    }

    /// From now on, writes events for the queue: the resource and related
    /// resources they repeat become references to shared parts (see
    /// [`crate::queue::shared`]), which the queue stores once per segment
    /// and its reader puts back. [`Mapped::json`] is then in the queue's
    /// format, not JSON; what leaves the queue is byte for byte the event
    /// a mapper without this writes.
    pub fn share_repeated_parts(&mut self) {
        self.scratch.share = true;
        let plans = self.rules.iter_mut().flat_map(|r| &mut r.plans);
        for plan in self.defaults.iter_mut().chain(plans) {
            plan.share_related();
        }
    }

    /// Maps one observation, appending its events to `out` (none when it
    /// was dropped or held back, several with `continue = true` rules).
    /// Returns how many it appended.
    ///
    /// # Errors
    /// [`MapError`] when even the built-in default cannot make a valid
    /// event (for example a payload over the size limit); the caller
    /// counts it and carries on. Events appended before stay valid.
    pub fn map(
        &mut self,
        mut observation: Observation,
        out: &mut Vec<Mapped>,
    ) -> Result<usize, MapError> {
        self.map_in_place(&mut observation, out)
    }

    /// [`Mapper::map`] of an observation left where it is (a batch's,
    /// which are a few hundred bytes each), taking only its checkpoint
    /// callback.
    ///
    /// # Errors
    /// As [`Mapper::map`].
    pub fn map_in_place(
        &mut self,
        observation: &mut Observation,
        out: &mut Vec<Mapped>,
    ) -> Result<usize, MapError> {
        let on_durable = observation.on_durable.take();
        let first = out.len();
        let result = self.map_inner(observation, out);
        if let Some(last) = out[first..].last_mut() {
            last.on_durable = on_durable;
        }
        self.stats.mapped += (out.len() - first) as u64;
        self.since_flush_check += 1;
        // Looking at the clock costs more than mapping some lines; once
        // every 256 observations is often enough for a once-a-second write.
        if self.since_flush_check >= 256 {
            self.since_flush_check = 0;
            if let Err(error) = self.follows.maybe_flush() {
                tracing::warn!(stage = "mapping", error = %error, "FollowsStateNotSaved");
            }
        }
        result.map(|()| out.len() - first)
    }

    fn map_inner(&mut self, obs: &Observation, out: &mut Vec<Mapped>) -> Result<(), MapError> {
        let json = OnceCell::new();
        let route = self.route(obs);
        for set in &mut self.sets {
            set.done = false;
        }
        let flavor = match self.routes[route].flavor {
            // The log of a pod's container: its pod and container are
            // related too.
            Flavor::Line if obs.line.as_ref().is_some_and(|l| l.pod.is_some()) => Flavor::PodLine,
            flavor => flavor,
        };
        let mut made = 0usize;
        let rule_count = self.routes[route].rules.len();
        for position in 0..rule_count {
            let index = self.routes[route].rules[position];
            let compiled = &mut self.rules[index];
            if !prefilter(compiled, &mut self.sets, obs, &json, &self.hostname) {
                continue;
            }
            self.captured.reset(compiled.rule.captures.len());
            let mut eval = Eval {
                obs,
                capture_names: &compiled.rule.captures,
                json: &json,
                hostname: &self.hostname,
                captured: &mut self.captured,
                regexes: &mut compiled.regexes,
            };
            if !compiled.rule.when.iter().all(|c| c.holds(&mut eval)) {
                continue;
            }
            if compiled.rule.drop {
                self.stats.dropped += 1;
                return Ok(());
            }
            if compiled.limiter.is_active() && !compiled.limiter.admit(&obs.observed_at) {
                self.stats.suppressed += 1;
                if compiled.rule.keep_going {
                    continue;
                }
                return Ok(());
            }
            let scope = Scope {
                obs,
                captured: &self.captured,
                capture_names: &compiled.rule.captures,
                json: &json,
                hostname: &self.hostname,
            };
            let id = event_id(&self.hostname, obs, made, &compiled.rule.name);
            let mut build = Build {
                scope: &scope,
                id,
                observed_at: obs.observed_at,
                scratch: &mut self.scratch,
                follows: &mut self.follows,
                occurred_failures: &mut self.stats.occurred_failures,
            };
            let bytes = self.arena.block();
            match compiled.plans[flavor.index()].write(&mut build, bytes) {
                Ok(()) => {
                    out.push(Mapped {
                        id,
                        json: self.arena.take(),
                        on_durable: None,
                    });
                    made += 1;
                    if !compiled.rule.keep_going {
                        return Ok(());
                    }
                }
                Err(failure) => {
                    bytes.clear();
                    self.stats.unmapped += 1;
                    compiled.unmapped += 1;
                    // Logged at 1, 2, 4, 8, ... so a rule failing on every
                    // line says so without flooding the log.
                    if compiled.unmapped.is_power_of_two() {
                        let why = match &failure {
                            Failure::Missing(part) => format!("a value of its {part} is missing"),
                            Failure::Invalid(e) => e.to_string(),
                        };
                        tracing::warn!(
                            stage = "mapping",
                            rule = %compiled.rule.name,
                            source = %obs.source,
                            kind = %obs.kind,
                            times = compiled.unmapped,
                            why = %why,
                            "RuleUnmapped: the observation goes on to the next rule"
                        );
                    }
                }
            }
        }
        self.captured.reset(0);
        let scope = Scope {
            obs,
            captured: &self.captured,
            capture_names: &[],
            json: &json,
            hostname: &self.hostname,
        };
        let id = event_id(&self.hostname, obs, made, "herald.default");
        let mut build = Build {
            scope: &scope,
            id,
            observed_at: obs.observed_at,
            scratch: &mut self.scratch,
            follows: &mut self.follows,
            occurred_failures: &mut self.stats.occurred_failures,
        };
        let bytes = self.arena.block();
        let mut result = self.defaults[flavor.index()].write(&mut build, bytes);
        if matches!(result, Err(Failure::Missing(_))) && flavor != Flavor::Other {
            // A line or file event without a path (a process event without
            // a pid) has no resource of its own: it is the agent's, like
            // any other kind.
            bytes.clear();
            result = self.defaults[Flavor::Other.index()].write(&mut build, bytes);
        }
        if result.is_err() {
            bytes.clear();
        }
        match result {
            Ok(()) => {
                out.push(Mapped {
                    id,
                    json: self.arena.take(),
                    on_durable: None,
                });
                Ok(())
            }
            Err(failure) => Err(MapError {
                source_name: obs.source.to_string(),
                kind: obs.kind.to_string(),
                error: match failure {
                    Failure::Invalid(error) => error,
                    // The agent's default uses no value that can be
                    // missing; kept total rather than panicking.
                    Failure::Missing(part) => {
                        EventError::Serialize(format!("a value of its {part} is missing"))
                    }
                },
            }),
        }
    }

    /// The rules that can apply to this observation's source and kind.
    fn route(&mut self, obs: &Observation) -> usize {
        if let Some(i) = self.routes.iter().position(|r| {
            (Arc::ptr_eq(&r.source, &obs.source) || r.source == obs.source) && *r.kind == *obs.kind
        }) {
            return i;
        }
        if self.routes.len() >= ROUTES {
            self.routes.clear();
        }
        let rules = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let r = &c.rule;
                (r.sources.is_empty() || r.sources.iter().any(|g| g.matches(&obs.source)))
                    && (r.kinds.is_empty() || r.kinds.iter().any(|g| g.matches(&obs.kind)))
            })
            .map(|(i, _)| i)
            .collect();
        self.routes.push(Route {
            source: obs.source.clone(),
            kind: obs.kind.as_ref().into(),
            flavor: Flavor::of(&obs.kind, &self.specs),
            rules,
        });
        self.routes.len() - 1
    }

    /// What the mapper did since it started.
    pub fn stats(&self) -> MapStats {
        self.stats
    }

    /// The matches each rule held back since the last call, by rule name
    /// (rules that held nothing back are left out).
    pub fn take_suppressed(&mut self) -> Vec<(String, u64)> {
        self.rules
            .iter_mut()
            .filter(|c| c.limiter.suppressed > 0)
            .map(|c| {
                let n = std::mem::take(&mut c.limiter.suppressed);
                (c.rule.name.clone(), n)
            })
            .collect()
    }

    /// An `agent.suppressed` observation (mapped by default to
    /// `herald.agent.suppressed` on the agent's resource) saying how many
    /// matches each rule held back since the last call; `None` when there
    /// were none. The agent calls this on a timer and maps the result like
    /// any observation.
    pub fn suppressed_observation(&mut self) -> Option<Observation> {
        let taken = self.take_suppressed();
        if taken.is_empty() {
            return None;
        }
        let total: u64 = taken.iter().map(|(_, n)| n).sum();
        let rules: Map<String, Value> = taken
            .into_iter()
            .map(|(name, n)| (name, Value::from(n)))
            .collect();
        Some(
            Observation::new(Arc::from(AGENT_SOURCE), "agent.suppressed")
                .with("rules", Value::Object(rules))
                .with("total", total),
        )
    }

    /// Writes the `follows` state now if it changed (the mapper also does
    /// so by itself at most once a second while events flow). Call it at
    /// shutdown.
    ///
    /// # Errors
    /// [`StateError`] when the state file cannot be written; the chains
    /// stay in memory.
    pub fn flush_state(&mut self) -> Result<(), StateError> {
        self.follows.flush()
    }
}

/// The id of the `made`-th event of an observation: derived from its
/// identity when it has one (the first exactly as before rules existed,
/// later ones also from the rule's name, so each is distinct) within this
/// agent's scope (its host name), else new.
fn event_id(scope: &str, obs: &Observation, made: usize, rule: &str) -> Uuid {
    match obs.identity_bytes() {
        Some(identity) if made == 0 => event::derived_id(scope, &obs.source, identity),
        Some(identity) => {
            let mut name = Vec::with_capacity(identity.len() + rule.len() + 1);
            name.extend_from_slice(identity);
            name.push(0);
            name.extend_from_slice(rule.as_bytes());
            event::derived_id(scope, &obs.source, &name)
        }
        None => event::fresh_id(),
    }
}

fn visit_regexes<'r>(
    conditions: &'r [Condition],
    f: &mut impl FnMut(&'r condition::RegexCondition),
) {
    for c in conditions {
        match c {
            Condition::Regex(r) => f(r),
            Condition::Not(inner) => visit_regexes(std::slice::from_ref(&**inner), f),
            Condition::All(all) | Condition::Any(all) => visit_regexes(all, f),
            _ => {}
        }
    }
}

/// Groups the top-level regexes of all rules by the field they test, and
/// compiles each group of two or more into one multi-pattern regex. (One
/// regex alone is cheaper to run directly.)
fn build_prefilter(rules: &mut [Compiled]) -> Vec<PrefilterSet> {
    let mut groups: BTreeMap<Box<str>, Vec<(usize, usize, String)>> = BTreeMap::new();
    let mut fields = BTreeMap::new();
    for (index, compiled) in rules.iter().enumerate() {
        for c in &compiled.rule.when {
            if let Condition::Regex(r) = c
                && r.top
                && !matches!(r.field.root, Root::Capture(_))
            {
                groups.entry(r.field.text.clone()).or_default().push((
                    index,
                    r.local,
                    r.pattern.to_string(),
                ));
                fields.insert(r.field.text.clone(), r.field.clone());
            }
        }
    }
    let mut sets = Vec::new();
    for (key, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let patterns: Vec<&str> = members.iter().map(|(_, _, p)| p.as_str()).collect();
        let built = Regex::builder()
            .syntax(syntax::Config::new())
            .configure(
                Regex::config()
                    .match_kind(MatchKind::All)
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::None),
            )
            .build_many(&patterns);
        // Every pattern compiled alone, so together they only fail on a
        // size limit; the rules then simply run without the prefilter.
        let Ok(regex) = built else {
            tracing::warn!(field = %key, patterns = patterns.len(), "PrefilterNotBuilt: rules still run, more slowly");
            continue;
        };
        let set = sets.len();
        for (pattern, (index, local, _)) in members.iter().enumerate() {
            if let Some(compiled) = rules.get_mut(*index) {
                compiled
                    .prefiltered
                    .push((*local, set, PatternID::new_unchecked(pattern)));
            }
        }
        let Some(field) = fields.remove(&key) else {
            continue;
        };
        sets.push(PrefilterSet {
            field,
            cache: regex.create_cache(),
            matched: PatternSet::new(regex.pattern_len()),
            regex,
            done: false,
        });
    }
    sets
}

/// Decides the rule's prefiltered regexes for this observation; `false`
/// when one of them cannot match, so the rule cannot apply.
fn prefilter(
    compiled: &mut Compiled,
    sets: &mut [PrefilterSet],
    obs: &Observation,
    json: &OnceCell<Option<Value>>,
    hostname: &str,
) -> bool {
    for &(local, set_index, pattern) in &compiled.prefiltered {
        let Some(set) = sets.get_mut(set_index) else {
            continue;
        };
        if !set.done {
            set.done = true;
            set.matched.clear();
            let scope = Scope {
                obs,
                captured: &Captured::EMPTY,
                capture_names: &[],
                json,
                hostname,
            };
            if let Some(value) = scope.get(&set.field) {
                let text = value.text();
                set.regex.which_overlapping_matches_with(
                    &mut set.cache,
                    &Input::new(text.as_bytes()),
                    &mut set.matched,
                );
            }
        }
        let matched = set.matched.contains(pattern);
        if let Some(state) = compiled.regexes.get_mut(local) {
            state.known = Some(matched);
        }
        if !matched {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
