//! What a webhook sends: the event as one JSON object, and its signature.
//!
//! `data` and `meta` are written the way the export and the cold tier write them
//! (`logbook_archive::encode_payload`): the payload itself when it is UTF-8 JSON
//! (`"data_encoding": "json"`), else a base64 string (`"base64"`). An event without metadata
//! has `"meta": null` and `"meta_encoding": null`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use logbook::RecordedEvent;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Logbook-Signature";
/// The header that carries the event's id, for receivers that drop repeated deliveries.
pub const EVENT_ID_HEADER: &str = "X-Logbook-Event-Id";

/// The JSON body of one delivery.
pub(crate) fn event_body(event: &RecordedEvent) -> String {
    let (data, data_encoding) = logbook_archive::encode_payload(event.data());
    let (meta, meta_encoding) = if event.metadata().is_empty() {
        ("null".to_string(), "null".to_string())
    } else {
        let (text, encoding) = logbook_archive::encode_payload(event.metadata());
        (text, json_string(encoding))
    };
    format!(
        "{{\"id\":\"{}\",\"stream\":{},\"version\":{},\"position\":{},\"type\":{},\"time\":\"{}\",\"data\":{data},\
         \"data_encoding\":{},\"meta\":{meta},\"meta_encoding\":{meta_encoding}}}",
        event.id(),
        json_string(event.stream()),
        event.version(),
        event.position(),
        json_string(event.event_type()),
        logbook::time::rfc3339(event.timestamp_us()),
        json_string(data_encoding),
    )
}

/// The body of a dead letter: which webhook gave up, after how many attempts, why, and the
/// body it could not deliver.
pub(crate) fn dead_letter_body(webhook: &str, attempts: u32, last_error: &str, event_body: &str) -> String {
    format!(
        "{{\"webhook\":{},\"attempts\":{attempts},\"last_error\":{},\"event\":{event_body}}}",
        json_string(webhook),
        json_string(last_error)
    )
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length (longer ones are hashed first), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_matches_rfc_4231_test_case_6_with_a_key_longer_than_a_block() {
        assert_eq!(
            signature(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn recorded(data: &[u8], meta: &[u8]) -> RecordedEvent {
        let dir = tempfile::tempdir().unwrap();
        let store = logbook::Store::open(dir.path(), logbook::Options::default()).unwrap();
        let mut event = logbook::NewEvent::new("OrderPlaced", data.to_vec());
        event.metadata = meta.to_vec();
        event.time_us = Some(1_700_000_000_000_001);
        store.append("order-\"1\"", logbook::ExpectedVersion::Any, vec![event]).unwrap();
        let event = store.read_stream("order-\"1\"", 1, 1, logbook::Direction::Forward).unwrap().remove(0);
        store.close().unwrap();
        event
    }

    #[test]
    fn json_payloads_are_embedded_and_others_are_base64() {
        let event = recorded(br#"{"total": 12.5}"#, b"");
        let body: serde_json::Value = serde_json::from_str(&event_body(&event)).unwrap();
        assert_eq!(body["id"], event.id().to_string());
        assert_eq!(body["stream"], "order-\"1\"");
        assert_eq!((body["version"].as_u64(), body["position"].as_u64()), (Some(1), Some(event.position())));
        assert_eq!(body["type"], "OrderPlaced");
        assert_eq!(body["time"], "2023-11-14T22:13:20.000001Z");
        assert_eq!(body["data"]["total"], 12.5);
        assert_eq!(body["data_encoding"], "json");
        assert!(body["meta"].is_null() && body["meta_encoding"].is_null());

        let event = recorded(&[0xff, 0, 1], br#"{"actor":"ops"}"#);
        let body: serde_json::Value = serde_json::from_str(&event_body(&event)).unwrap();
        assert_eq!((body["data"].as_str(), body["data_encoding"].as_str()), (Some("/wAB"), Some("base64")));
        assert_eq!((body["meta"]["actor"].as_str(), body["meta_encoding"].as_str()), (Some("ops"), Some("json")));
    }

    #[test]
    fn a_dead_letter_holds_the_undelivered_body() {
        let text = dead_letter_body("orders", 3, "HTTP 500 \"oops\"", r#"{"id":"x"}"#);
        let letter: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(letter["webhook"], "orders");
        assert_eq!(letter["attempts"], 3);
        assert_eq!(letter["last_error"], "HTTP 500 \"oops\"");
        assert_eq!(letter["event"]["id"], "x");
    }
}
