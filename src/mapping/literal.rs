//! The required literal of a regex: bytes that every match contains, so a
//! haystack without them cannot match and the regex need not run.
//!
//! Log rules are often anchored patterns like `^(?P<client>\S+) ...`; no
//! prefix literal helps them, and on a line of another format the regex
//! still walks to the first space before failing (a JSON line's first
//! space can be 100 bytes in). A literal the pattern always requires
//! (`] "` in an nginx pattern) is found with `memmem` far faster.
//!
//! The literal is read off the pattern's Thompson NFA, compiled with the
//! same syntax as the rule's regex: a single-byte transition that every
//! path from the start to a match goes through (found by checking that no
//! match is reachable without it), extended by the single-byte
//! transitions that must follow it. That is sound whatever the pattern
//! holds; a pattern it cannot read (case-insensitive, or too large) just
//! has no required literal. This module does not run regexes.

use regex_automata::nfa::thompson::{self, NFA, State, WhichCaptures};
use regex_automata::util::primitives::StateID;

/// NFAs larger than this are not analysed (the analysis is quadratic).
const MAX_STATES: usize = 4096;
/// At most this many candidate transitions are tried.
const MAX_CANDIDATES: usize = 64;
/// Literals are cut at this length (longer gains nothing).
const MAX_LEN: usize = 32;

/// The longest literal every match of `pattern` contains, if any.
pub(crate) fn required(pattern: &str) -> Option<Box<[u8]>> {
    let nfa = NFA::compiler()
        .configure(
            thompson::Config::new()
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(1 << 20)),
        )
        .build(pattern)
        .ok()?;
    let states = nfa.states();
    if states.len() > MAX_STATES {
        return None;
    }
    let start = nfa.start_anchored();
    // A pattern that can never match gains nothing from a literal.
    if !reaches_match(&nfa, start, None) {
        return None;
    }
    let mut best: Option<Vec<u8>> = None;
    let candidates = states
        .iter()
        .enumerate()
        .filter_map(|(i, state)| match state {
            State::ByteRange { trans } if trans.start == trans.end => StateID::new(i).ok(),
            _ => None,
        });
    for id in candidates.take(MAX_CANDIDATES) {
        if reaches_match(&nfa, start, Some(id)) {
            continue;
        }
        let literal = chain(&nfa, id);
        if best.as_ref().is_none_or(|b| literal.len() > b.len()) {
            best = Some(literal);
        }
    }
    best.map(Vec::into_boxed_slice)
}

/// Whether a match state can be reached from `start` without passing
/// through `avoid`. Every edge is followed whatever its bytes, which can
/// only make a state look avoidable, never required.
fn reaches_match(nfa: &NFA, start: StateID, avoid: Option<StateID>) -> bool {
    let mut seen = vec![false; nfa.states().len()];
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if Some(id) == avoid || std::mem::replace(&mut seen[id.as_usize()], true) {
            continue;
        }
        match nfa.state(id) {
            State::Match { .. } => return true,
            State::Fail => {}
            State::ByteRange { trans } => stack.push(trans.next),
            State::Sparse(sparse) => stack.extend(sparse.transitions.iter().map(|t| t.next)),
            State::Dense(dense) => stack.extend(dense.transitions.iter().copied()),
            State::Look { next, .. } | State::Capture { next, .. } => stack.push(*next),
            State::Union { alternates } => stack.extend(alternates.iter().copied()),
            State::BinaryUnion { alt1, alt2 } => stack.extend([*alt1, *alt2]),
        }
    }
    false
}

/// The bytes that must be read from the single-byte transition `id` on:
/// its own, then those of the single-byte transitions that follow it with
/// no choice in between (assertions and groups read nothing).
fn chain(nfa: &NFA, mut id: StateID) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_LEN {
        match nfa.state(id) {
            State::ByteRange { trans } if trans.start == trans.end => {
                out.push(trans.start);
                id = trans.next;
            }
            State::Look { next, .. } | State::Capture { next, .. } if !out.is_empty() => {
                id = *next;
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use memchr::memmem;
    use proptest::prelude::*;
    use regex_automata::meta::Regex;

    fn text(pattern: &str) -> Option<String> {
        required(pattern).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn literals_every_match_needs() {
        let nginx = r#"^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<route>[^ "?]*)(?:\?[^ "]*)? [^"]*" (?P<status>\d{3}) (?P<bytes>\d+)"#;
        assert_eq!(text(nginx).as_deref(), Some("] \""));
        assert_eq!(text("abc").as_deref(), Some("abc"));
        assert_eq!(text(r"\d+ERROR\s").as_deref(), Some("ERROR"));
        assert_eq!(text("(?:foo)+barx").as_deref(), Some("barx"));
        assert_eq!(text("é+x").as_deref(), Some("é"));
        assert_eq!(text(r"tenant=7&(?P<q>\S*)").as_deref(), Some("tenant=7&"));
    }

    #[test]
    fn optional_or_alternative_text_is_not_required() {
        assert_eq!(text("foo|bar"), None);
        assert_eq!(text("(?:abc)?"), None);
        assert_eq!(text("x*"), None);
        assert_eq!(text("(?i)error"), None);
        assert_eq!(text(r"\d+"), None);
        assert_eq!(text("(?:a|b)cd").as_deref(), Some("cd"));
        assert_eq!(text("[^\\s\\S]"), None, "never matches");
    }

    proptest! {
        /// Soundness: whenever the regex matches, the haystack holds the
        /// literal.
        #[test]
        fn a_match_always_holds_the_literal(
            pattern in r"(\^?(ab|a|b|c|\.|x\??|\(a\|bc\)|\[ab\]|\(\?:ab\)\*|\(\?:ca\)\+|\\d|é|\$)){1,6}",
            hay in "[abcx1é ]{0,12}",
        ) {
            let Ok(regex) = Regex::new(&pattern) else { return Ok(()) };
            if let Some(literal) = required(&pattern)
                && regex.is_match(&hay)
            {
                prop_assert!(memmem::find(hay.as_bytes(), &literal).is_some(), "{:?} {:?}", pattern, hay);
            }
        }
    }
}
