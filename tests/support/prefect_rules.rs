//! Prefect's event rules, written again from the spec for tests: an event
//! herald printed or posted must pass these, independently of the
//! `herald::event` code that built it. (The end-to-end script checks the
//! same events with Prefect's own model.)

use serde_json::Value;

/// Checks one event; the error names the rule it broke.
pub fn check(event: &Value) -> Result<(), String> {
    let object = event.as_object().ok_or("an event must be a JSON object")?;
    for key in object.keys() {
        if ![
            "occurred", "event", "resource", "related", "payload", "id", "follows",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("unexpected top-level field {key:?}"));
        }
    }
    let occurred = object
        .get("occurred")
        .and_then(Value::as_str)
        .ok_or("occurred must be a string")?;
    if !is_utc_micros(occurred) {
        return Err(format!(
            "occurred {occurred:?} is not RFC 3339 UTC with microseconds and Z"
        ));
    }
    let name = object
        .get("event")
        .and_then(Value::as_str)
        .ok_or("event must be a string")?;
    if name.trim().is_empty() || name.chars().count() > 1024 {
        return Err(format!(
            "event name {name:?} is empty or over 1024 characters"
        ));
    }
    check_resource(object.get("resource"), "resource", false)?;
    let related = object
        .get("related")
        .and_then(Value::as_array)
        .ok_or("related must be an array")?;
    if related.len() > 100 {
        return Err(format!("{} related resources, over 100", related.len()));
    }
    for (i, r) in related.iter().enumerate() {
        check_resource(Some(r), &format!("related[{i}]"), true)?;
    }
    if !object.get("payload").is_some_and(Value::is_object) {
        return Err("payload must be an object".into());
    }
    for key in ["id", "follows"] {
        match object.get(key) {
            None if key == "follows" => {}
            Some(Value::String(id)) if is_lower_uuid(id) => {}
            other => return Err(format!("{key} must be a lower-case UUID, found {other:?}")),
        }
    }
    let size = serde_json::to_vec(event).map_or(usize::MAX, |b| b.len());
    if size > 1_500_000 {
        return Err(format!("serialized size {size} is over 1,500,000 bytes"));
    }
    Ok(())
}

fn check_resource(value: Option<&Value>, what: &str, related: bool) -> Result<(), String> {
    let labels = value
        .and_then(Value::as_object)
        .ok_or(format!("{what} must be an object"))?;
    if labels.len() > 500 {
        return Err(format!("{what} has {} labels, over 500", labels.len()));
    }
    if let Some((k, v)) = labels.iter().find(|(_, v)| !v.is_string()) {
        return Err(format!("{what} label {k:?} is not a string: {v}"));
    }
    let non_empty = |key: &str| {
        labels
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.trim().is_empty())
    };
    if !non_empty("prefect.resource.id") {
        return Err(format!("{what} has no prefect.resource.id"));
    }
    if related && !non_empty("prefect.resource.role") {
        return Err(format!("{what} has no prefect.resource.role"));
    }
    Ok(())
}

/// `2026-11-27T15:04:05.123456Z`
fn is_utc_micros(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
}

fn is_lower_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}
