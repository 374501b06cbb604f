//! Property: arbitrary bytes as lines, through arbitrary valid rules,
//! never panic, and every event that comes out passes Prefect's rules.

mod support;

use std::sync::Arc;

use herald::identity::Identity;
use herald::mapping::Mapper;
use herald::observation::Observation;
use proptest::prelude::*;
use serde_json::Value;
use support::prefect_rules;

/// Conditions that are valid on a `line` whatever the rule holds; the
/// first kind carries captures `a` and `b`.
const CONDITIONS: &[&str] = &[
    r#"{ regex = '(?P<a>\w+)\W+(?P<b>\d*)' }"#,
    r#"{ regex = '^\s*[{\[]' }"#,
    r#"{ regex = '(?i)error|warn' }"#,
    r#"{ regex = '(?s).' }"#,
    r#"{ field = "json.level", in = ["ERROR", 1, true] }"#,
    r#"{ field = "json.n", gte = 3 }"#,
    r#"{ field = "json.n", lt = -1.5 }"#,
    r#"{ field = "json.x.y", exists = true }"#,
    r#"{ field = "offset", equals = 0 }"#,
    r#"{ not = { field = "line", regex = '^$' } }"#,
    r#"{ any = [ { field = "json.a", exists = false }, { field = "line", regex = 'x' } ] }"#,
];

/// Templates valid everywhere (they use no capture).
const TEMPLATES: &[&str] = &[
    "{line}",
    "x.{json.level | lower | default:none}",
    "{json.msg | truncate:3}",
    "{path | basename | slug}",
    "{{lit}} {source}.{kind}.{hostname}",
    "{json.x.y | upper}",
    "{offset}",
    "{json}",
    "{line | slug | default:empty}",
];

fn rule(index: usize, conditions: &[usize], event: usize, id: usize, flags: u8) -> String {
    let mut picked: Vec<usize> = conditions.iter().map(|&c| c % CONDITIONS.len()).collect();
    // A capture name may be captured once per rule.
    picked.sort_unstable();
    picked.dedup();
    let when: Vec<&str> = picked.iter().map(|&c| CONDITIONS[c]).collect();
    let mut out = format!(
        "[[mappings]]\nname = \"r{index}\"\nkind = \"line\"\nwhen = [{}]\n",
        when.join(", ")
    );
    if flags & 1 == 1 && !when.is_empty() {
        out.push_str("drop = true\n");
        return out;
    }
    out.push_str(&format!(
        "event = \"{}\"\n",
        TEMPLATES[event % TEMPLATES.len()].replace('"', "\\\"")
    ));
    if flags & 2 == 2 {
        out.push_str(&format!(
            "resource.id = \"r.{}\"\n",
            TEMPLATES[id % TEMPLATES.len()]
        ));
        out.push_str("resource.labels = { \"l\" = \"{json.level | default:-}\" }\n");
        out.push_str(
            "related = [ { id = \"rel.{offset}\", role = \"{json.role | default:x}\" } ]\n",
        );
    }
    if flags & 4 == 4 {
        out.push_str("continue = true\n");
    }
    if flags & 8 == 8 {
        out.push_str("payload_fields = \"all\"\n");
    } else if flags & 16 == 16 {
        out.push_str("payload = { t = \"{line | truncate:10}\", o = \"{offset}\", c = 1 }\n");
    }
    if flags & 32 == 32 {
        out.push_str("occurred = { field = \"json.ts\", format = \"epoch_ms\" }\n");
    }
    if flags & 64 == 64 {
        out.push_str("sample = 2\n");
    }
    if flags & 24 == 0 && picked.first() == Some(&0) {
        out.push_str("payload = { a = \"{a}\", b = \"{b | default:0}\" }\n");
    }
    out
}

fn rules() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::collection::vec(0usize..32, 0..3),
            0usize..32,
            0usize..32,
            any::<u8>(),
        ),
        0..6,
    )
    .prop_map(|rules| {
        let mut text = String::from("[agent]\nhostname = \"h\"\n");
        for (i, (conditions, event, id, flags)) in rules.into_iter().enumerate() {
            text.push_str(&rule(i, &conditions, event, id, flags));
        }
        text
    })
}

fn input() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let json_like = prop::collection::vec(any::<u8>(), 0..40).prop_map(|tail| {
        let mut line = br#"{"level":"ERROR","n":5,"x":{"y":1},"ts":1700000000000,"msg":"#.to_vec();
        line.extend(tail);
        line
    });
    (
        prop_oneof![prop::collection::vec(any::<u8>(), 0..300), json_like],
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_lines_through_arbitrary_rules_never_panic(
        text in rules(),
        lines in prop::collection::vec(input(), 1..8),
    ) {
        let config = match herald::config::parse("p.toml", &text, &|_| None) {
            Ok(config) => config,
            Err(mistakes) => panic!("generated rules must be valid:\n{text}\n{mistakes}"),
        };
        let identity = Identity::discover(Some("h"), &config.agent.labels, &|_| None);
        let mut mapper = Mapper::new(identity, &config.mappings, None);
        for (i, (bytes, with_path)) in lines.into_iter().enumerate() {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut obs = Observation::new(Arc::from("any"), "line")
                .with("line", text.clone())
                .with("offset", i as u64);
            if with_path {
                obs = obs.with("path", "/var/log/x y/é.log");
            }
            if let Ok(json @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                obs = obs.with("json", json);
            }
            let mut out = Vec::new();
            // An error (an event over the size limit) is allowed; a panic is not.
            let _ = mapper.map(obs, &mut out);
            for mapped in out {
                let event: Value = serde_json::from_slice(&mapped.json).expect("valid JSON");
                prop_assert!(prefect_rules::check(&event).is_ok(), "{:?}: {}", prefect_rules::check(&event), event);
            }
        }
    }
}
