//! Property and example tests of the wire contract: round-trips, and every rule violation
//! rejected with a named error code.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns panic on broken fixtures"
)]

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use shared_proto::limits::{MAX_COST_CENTS, MAX_COUNT, MAX_LOAD_AVERAGE};
use shared_proto::{
    AgentId, ApiKey, BatchResponse, Event, EventResult, EventStatus, EventType, KeyEnv, Payload,
    limits,
};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-03T14:32:00.123Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn envelope(event_type: &str, payload: Value) -> Value {
    json!({
        "event_id": "0b6c4c1e-8a5d-4f0e-9a43-2f1d8f5e6a7b",
        "ts": "2026-05-03T14:32:00.123Z",
        "event_type": event_type,
        "agent_id": "agent_acme_employee_42",
        "run_id": "run_8a3b",
        "payload": payload,
    })
}

fn valid_payload(t: EventType) -> Value {
    match t {
        EventType::SessionStart => json!({"paperclip_run_id": "pc_1", "agent_kind": "employee"}),
        EventType::SessionEnd => json!({"status": "success", "exit_code": 0, "duration_ms": 1200}),
        EventType::ToolCall => json!({"tool_name": "Bash", "ok": true, "duration_ms": 12,
            "args_size_bytes": 40, "output_size_bytes": 900, "tool_use_id": "toolu_1",
            "tool_source": "builtin"}),
        EventType::LlmUsage => json!({"model": "claude-opus-4-6", "input_tokens": 3,
            "output_tokens": 13, "cache_read_tokens": 11515, "cache_write_tokens": 13835,
            "cost_cents": 14.44475, "total_turns": 1}),
        EventType::Error => json!({"kind": "hook_failed", "message_120c": "spool locked"}),
        EventType::Heartbeat => json!({"paperclip_uptime_s": null, "agent_runtime_count": 2,
            "host_load_1m": 0.42, "agent_versions": {"agent_1": "1.2.3"}}),
    }
}

fn code_of(value: Value) -> &'static str {
    Event::parse_at(value, now()).unwrap_err().code()
}

#[test]
fn every_event_type_round_trips_and_keeps_unknown_fields() {
    for t in EventType::ALL {
        let mut payload = valid_payload(t);
        payload["future_field"] = json!({"nested": [1, 2]});
        let event = Event::parse_at(envelope(t.as_str(), payload.clone()), now()).unwrap();
        assert_eq!(event.event_type(), t);
        assert_eq!(
            event.payload_value()["future_field"],
            payload["future_field"]
        );
        let stored: Value = serde_json::from_str(&event.payload_json()).unwrap();
        assert_eq!(stored, event.payload_value(), "stored text and value agree");
        let again = Event::parse_at(event.to_value(), now()).unwrap();
        assert_eq!(again, event);
    }
}

#[test]
fn unknown_envelope_fields_are_ignored() {
    let mut v = envelope("error", valid_payload(EventType::Error));
    v["schema_version"] = json!(7);
    assert!(Event::parse_at(v, now()).is_ok());
}

#[test]
fn envelope_violations_have_named_codes() {
    let ok = || envelope("tool_call", valid_payload(EventType::ToolCall));
    let with = |k: &str, v: Value| {
        let mut e = ok();
        e[k] = v;
        e
    };
    let without = |k: &str| {
        let mut e = ok();
        e.as_object_mut().unwrap().remove(k);
        e
    };
    assert_eq!(code_of(json!([1])), "not_an_envelope");
    assert_eq!(code_of(without("event_id")), "missing_field");
    assert_eq!(code_of(without("payload")), "missing_field");
    assert_eq!(
        code_of(with("event_id", json!("not-a-uuid"))),
        "invalid_event_id"
    );
    assert_eq!(code_of(with("event_id", json!(42))), "wrong_type");
    assert_eq!(code_of(with("ts", json!("yesterday"))), "invalid_ts");
    assert_eq!(
        code_of(with("ts", json!("2026-05-04T14:33:00Z"))),
        "ts_in_future"
    );
    assert_eq!(
        code_of(with("event_type", json!("tool.call"))),
        "unknown_event_type"
    );
    assert_eq!(
        code_of(with("agent_id", json!("has space"))),
        "invalid_agent_id"
    );
    assert_eq!(code_of(with("agent_id", json!(""))), "invalid_agent_id");
    assert_eq!(
        code_of(with("agent_id", json!("a".repeat(129)))),
        "invalid_agent_id"
    );
    assert_eq!(code_of(with("run_id", json!("run/1"))), "invalid_run_id");
    assert_eq!(code_of(with("payload", json!([]))), "wrong_type");
    let big =
        json!({"tool_name": "Bash", "ok": true, "pad": "x".repeat(limits::MAX_PAYLOAD_BYTES)});
    assert_eq!(code_of(with("payload", big)), "payload_too_large");
}

#[test]
fn ts_just_inside_the_future_window_is_accepted() {
    let mut e = envelope("error", valid_payload(EventType::Error));
    let ts = now() + TimeDelta::hours(23);
    e["ts"] = json!(ts.to_rfc3339());
    assert!(Event::parse_at(e, now()).is_ok());
}

#[test]
fn payload_violations_have_named_codes() {
    let cases: &[(&str, Value, &str)] = &[
        ("tool_call", json!({"ok": true}), "missing_field"),
        (
            "tool_call",
            json!({"tool_name": "Bash", "ok": "yes"}),
            "wrong_type",
        ),
        (
            "tool_call",
            json!({"tool_name": "Bash", "ok": true, "duration_ms": -5}),
            "negative_value",
        ),
        (
            "tool_call",
            json!({"tool_name": "Bash", "ok": true, "duration_ms": 1.5}),
            "wrong_type",
        ),
        (
            "tool_call",
            json!({"tool_name": "Bash", "ok": true, "tool_source": "cloud"}),
            "invalid_value",
        ),
        (
            "tool_call",
            json!({"tool_name": "", "ok": true}),
            "invalid_value",
        ),
        (
            "session.end",
            json!({"status": "done", "exit_code": 0, "duration_ms": 1}),
            "invalid_value",
        ),
        (
            "session.end",
            json!({"status": "failed", "exit_code": "1", "duration_ms": 1}),
            "wrong_type",
        ),
        (
            "session.end",
            json!({"status": "failed", "exit_code": 1, "duration_ms": -1}),
            "negative_value",
        ),
        ("session.start", json!({}), "missing_field"),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1,
            "cost_cents": -0.5, "total_turns": 1}),
            "negative_value",
        ),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": -1, "output_tokens": 1,
            "cost_cents": 0.5, "total_turns": 1}),
            "negative_value",
        ),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1,
            "total_turns": 1}),
            "missing_field",
        ),
        (
            "error",
            json!({"kind": "k", "message_120c": "x".repeat(121)}),
            "too_long",
        ),
        (
            "heartbeat",
            json!({"host_load_1m": 0.1, "agent_versions": {"a": 1}}),
            "wrong_type",
        ),
        ("heartbeat", json!({"host_load_1m": "high"}), "wrong_type"),
        // Upper bounds: rejected, never clamped.
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1,
            "cost_cents": 1e308, "total_turns": 1}),
            "out_of_range",
        ),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1,
            "cost_cents": 100_000_000.01, "total_turns": 1}),
            "out_of_range",
        ),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": MAX_COUNT + 1, "output_tokens": 1,
            "cost_cents": 1.0, "total_turns": 1}),
            "out_of_range",
        ),
        (
            "llm_usage",
            json!({"model": "m", "input_tokens": 1, "output_tokens": u64::MAX,
            "cost_cents": 1.0, "total_turns": 1}),
            "out_of_range",
        ),
        (
            "tool_call",
            json!({"tool_name": "Bash", "ok": true, "duration_ms": 1e300}),
            "out_of_range",
        ),
        (
            "heartbeat",
            json!({"host_load_1m": 1e7, "agent_versions": {}}),
            "out_of_range",
        ),
    ];
    for (t, payload, code) in cases {
        assert_eq!(
            code_of(envelope(t, payload.clone())),
            *code,
            "{t} {payload}"
        );
    }
}

#[test]
fn the_bounds_themselves_are_accepted() {
    let usage = json!({"model": "m", "input_tokens": MAX_COUNT, "output_tokens": MAX_COUNT,
        "cache_read_tokens": MAX_COUNT, "cost_cents": MAX_COST_CENTS as f64,
        "total_turns": MAX_COUNT});
    assert!(Event::parse_at(envelope("llm_usage", usage), now()).is_ok());
    let beat = json!({"host_load_1m": MAX_LOAD_AVERAGE as f64, "agent_versions": {},
        "spool_depth": MAX_COUNT});
    assert!(Event::parse_at(envelope("heartbeat", beat), now()).is_ok());
}

#[test]
fn new_applies_the_same_rules_as_parse() {
    let agent = AgentId::parse("agent_1").unwrap();
    let too_long = Payload::Error(shared_proto::ErrorPayload {
        kind: "k".into(),
        message_120c: "é".repeat(121),
        ..Default::default()
    });
    let err = Event::new(Uuid::new_v4(), Utc::now(), agent.clone(), None, too_long).unwrap_err();
    assert_eq!(err.code(), "too_long");
    let fine = Payload::Error(shared_proto::ErrorPayload {
        kind: "k".into(),
        message_120c: "é".repeat(120),
        ..Default::default()
    });
    assert!(Event::new(Uuid::new_v4(), Utc::now(), agent, None, fine).is_ok());
}

#[test]
fn api_keys_are_born_valid_and_hash_stably() {
    let env = KeyEnv::parse("prod").unwrap();
    let key = ApiKey::generate(&env).unwrap();
    let text = key.expose().to_owned();
    assert!(text.starts_with("m8brain_prod_"));
    assert_eq!(text.len(), "m8brain_prod_".len() + 32);
    let parsed = ApiKey::parse(&text).unwrap();
    assert_eq!(parsed.hash(), key.hash());
    assert_eq!(key.hash().as_str().len(), 64);
    assert!(
        !format!("{key:?}").contains(&text[13..]),
        "Debug must not print the secret"
    );
    assert_ne!(ApiKey::generate(&env).unwrap(), key);
    for bad in [
        "",
        "m8brain_prod_",
        "m8brain_PROD_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "m8brain_prod_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1",
        "m8brain_prod_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "xxbrain_prod_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "m8brain_waytoolongenvironment_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(ApiKey::parse(bad).is_err(), "{bad}");
    }
    assert!(KeyEnv::parse("").is_err());
    assert!(KeyEnv::parse("dev-1").is_err());
}

#[test]
fn batch_response_counts_each_status() {
    let r = |status| EventResult {
        event_id: None,
        status,
        error: None,
    };
    let resp = BatchResponse::from_results(vec![
        r(EventStatus::Accepted),
        r(EventStatus::Duplicate),
        r(EventStatus::Accepted),
        r(EventStatus::Rejected),
    ]);
    assert_eq!((resp.accepted, resp.duplicate, resp.rejected), (2, 1, 1));
    let back: BatchResponse = serde_json::from_value(serde_json::to_value(&resp).unwrap()).unwrap();
    assert_eq!(back, resp);
}

fn id_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,128}"
}

fn payload_strategy() -> impl Strategy<Value = (EventType, Value)> {
    let count = 0u64..=MAX_COUNT;
    let text = "[a-zA-Z0-9 _.-]{1,40}";
    prop_oneof![
        (text, proptest::option::of(text)).prop_map(|(r, k)| (
            EventType::SessionStart,
            json!({"paperclip_run_id": r, "agent_kind": k})
        )),
        (
            prop_oneof![Just("success"), Just("failed"), Just("timeout")],
            any::<i64>(),
            count.clone()
        )
            .prop_map(|(s, c, d)| (
                EventType::SessionEnd,
                json!({"status": s, "exit_code": c, "duration_ms": d})
            )),
        (
            text,
            any::<bool>(),
            proptest::option::of(count.clone()),
            proptest::option::of(count.clone())
        )
            .prop_map(|(n, ok, d, a)| (
                EventType::ToolCall,
                json!({"tool_name": n, "ok": ok, "duration_ms": d, "args_size_bytes": a})
            )),
        (
            text,
            count.clone(),
            count.clone(),
            0.0f64..=(MAX_COST_CENTS as f64),
            count.clone()
        )
            .prop_map(|(m, i, o, c, t)| (
                EventType::LlmUsage,
                json!({"model": m, "input_tokens": i, "output_tokens": o,
                "cost_cents": c, "total_turns": t})
            )),
        (text, "[^\u{0}]{0,120}")
            .prop_map(|(k, m)| (EventType::Error, json!({"kind": k, "message_120c": m}))),
        (
            proptest::option::of(count.clone()),
            0.0f64..512.0,
            proptest::collection::btree_map(id_strategy(), text, 0..4)
        )
            .prop_map(|(u, l, v)| (
                EventType::Heartbeat,
                json!({"paperclip_uptime_s": u, "host_load_1m": l, "agent_versions": v})
            )),
    ]
}

proptest! {
    #[test]
    fn valid_events_round_trip(
        agent in id_strategy(),
        run in proptest::option::of(id_strategy()),
        millis in 0i64..4_000_000_000_000,
        (t, payload) in payload_strategy(),
    ) {
        let ts = DateTime::from_timestamp_millis(millis).unwrap();
        let mut v = json!({
            "event_id": Uuid::new_v4().to_string(),
            "ts": ts.to_rfc3339(),
            "event_type": t.as_str(),
            "agent_id": agent,
            "payload": payload,
        });
        if let Some(run) = run {
            v["run_id"] = json!(run);
        }
        let far_future = DateTime::from_timestamp_millis(4_100_000_000_000).unwrap();
        let event = Event::parse_at(v, far_future).unwrap();
        prop_assert_eq!(event.ts(), ts);
        let text = serde_json::to_string(&event).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(Event::parse_at(back, far_future).unwrap(), event);
    }

    #[test]
    fn negative_counters_are_always_rejected(n in i64::MIN..0, field in prop_oneof![
        Just("duration_ms"), Just("args_size_bytes"), Just("output_size_bytes")]) {
        let mut payload = valid_payload(EventType::ToolCall);
        payload[field] = json!(n);
        prop_assert_eq!(code_of(envelope("tool_call", payload)), "negative_value");
    }

    #[test]
    fn counters_and_money_above_their_bounds_are_always_rejected(
        over in 1u64..=(u64::MAX - MAX_COUNT),
        cents in (MAX_COST_CENTS as f64)..=f64::MAX,
    ) {
        let mut payload = valid_payload(EventType::LlmUsage);
        payload["output_tokens"] = json!(MAX_COUNT + over);
        prop_assert_eq!(code_of(envelope("llm_usage", payload)), "out_of_range");
        let mut payload = valid_payload(EventType::LlmUsage);
        payload["cost_cents"] = json!(cents);
        prop_assume!(cents > MAX_COST_CENTS as f64);
        prop_assert_eq!(code_of(envelope("llm_usage", payload)), "out_of_range");
    }

    #[test]
    fn bad_ids_are_always_rejected(agent in "[A-Za-z0-9]{0,5}[ /@#é][A-Za-z0-9]{0,5}") {
        let mut v = envelope("error", valid_payload(EventType::Error));
        v["agent_id"] = json!(agent);
        prop_assert_eq!(code_of(v), "invalid_agent_id");
    }

    #[test]
    fn unknown_event_types_are_always_rejected(t in "[a-z_.]{1,20}") {
        prop_assume!(t.parse::<EventType>().is_err());
        prop_assert_eq!(code_of(envelope(&t, json!({}))), "unknown_event_type");
    }
}
