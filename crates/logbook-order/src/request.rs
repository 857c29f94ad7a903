//! The arguments of the daemon's `ORDER <order-id> <COMMAND> [<json arguments>]`, parsed into an
//! [`OrderCommand`] (or `STATE`). Pure: no store, no protocol; the daemon command (feature
//! `server`) and the fuzz target `order_request` call [`parse_request`].
//!
//! The JSON arguments are one object whose keys are the command's fields (the names of
//! [`OrderCommand`]'s fields), plus an optional `"id"` (a UUID naming this command; see
//! docs/order.md, "ORDER in the daemon"). Money is the module's own form,
//! `{"amount": <integer minor units>, "currency": "EUR"}`. Unknown keys, missing fields and
//! wrong types are errors naming the field; the domain's rules (lengths, quantities,
//! currencies, totals) are the aggregate's and come back as a rejection, not from here.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::{order_id_of, Money, OrderCommand, MAX_TEXT_BYTES};

/// Longest order id (bytes), the same bound as the ids inside commands.
pub const MAX_ORDER_ID_BYTES: usize = MAX_TEXT_BYTES;
/// Largest JSON argument of one ORDER command (bytes). Every field is at most a few hundred
/// bytes, so 64 KiB is generous; the daemon's `max_bulk_bytes` applies before this.
pub const MAX_ORDER_JSON_BYTES: usize = 64 * 1024;

/// The commands ORDER runs, as written on the wire, each with its JSON fields (every field
/// required unless noted in docs/order.md; `"id"` is accepted by all).
pub const COMMANDS: [(&str, &[&str]); 14] = [
    ("CREATE_CART", &["retailer_id", "customer_id", "currency"]),
    ("ADD_ITEM", &["product_id", "quantity", "unit_price"]),
    ("REMOVE_ITEM", &["product_id", "quantity"]),
    ("START_CHECKOUT", &[]),
    ("CONFIRM_PAYMENT", &["transaction_id", "gateway", "amount"]),
    ("FAIL_PAYMENT", &["reason"]),
    ("PLACE_ORDER", &[]),
    ("CANCEL_ITEM", &["product_id", "reason"]),
    ("START_PROCESSING", &[]),
    ("SHIP", &["tracking"]),
    ("FAIL_DELIVERY", &["reason"]),
    ("DELIVER", &[]),
    ("CANCEL", &["reason"]),
    ("ISSUE_REFUND", &["amount"]),
];

/// `ORDER <id> STATE`: the word that asks for the state instead of running a command.
pub const STATE: &str = "STATE";

/// What an ORDER request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderAction {
    /// `STATE`: the order's current state.
    State,
    /// Run `command` (`name` is its wire name, e.g. `SHIP`); `command_id` is the optional
    /// `"id"` of the JSON arguments.
    Run { name: &'static str, command: OrderCommand, command_id: Option<Uuid> },
}

/// A parsed ORDER request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// The order id (a leading `order-` is taken off: `order-17` and `17` are the same order).
    pub order_id: String,
    pub action: OrderAction,
}

/// Why the arguments of ORDER were refused (nothing was run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("wrong number of arguments for 'ORDER'")]
    WrongArity,
    #[error("order id {0}")]
    OrderId(String),
    #[error("unknown ORDER command '{0}': expected STATE or one of {list}", list = command_list())]
    UnknownCommand(String),
    #[error("STATE takes no JSON arguments")]
    StateWithArguments,
    #[error("{command}: the JSON arguments are {len} bytes, at most {MAX_ORDER_JSON_BYTES} allowed")]
    TooBig { command: &'static str, len: usize },
    #[error("{command}: the JSON arguments are not valid JSON: {detail}")]
    Json { command: &'static str, detail: String },
    #[error("{command}: the JSON arguments must be an object, got {kind}")]
    NotAnObject { command: &'static str, kind: &'static str },
    #[error("{command}: unknown field \"{field}\" (expected {expected})")]
    UnknownField { command: &'static str, field: String, expected: String },
    #[error("{command}: missing field \"{field}\"")]
    MissingField { command: &'static str, field: &'static str },
    #[error("{command}: field \"{field}\": {detail}")]
    Field { command: &'static str, field: &'static str, detail: String },
}

fn command_list() -> String {
    COMMANDS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// Parses the arguments after `ORDER`: `<order-id> <COMMAND> [<json>]`. `tenant` is the
/// caller's tenant, if any: CREATE_CART's `retailer_id` then defaults to it and may not differ.
pub fn parse_request(args: &[Vec<u8>], tenant: Option<&str>) -> Result<OrderRequest, RequestError> {
    let (id, command, json) = match args {
        [id, command] => (id, command, None),
        [id, command, json] => (id, command, Some(json.as_slice())),
        _ => return Err(RequestError::WrongArity),
    };
    let order_id = parse_order_id(id)?;
    if command.eq_ignore_ascii_case(STATE.as_bytes()) {
        return match json {
            None => Ok(OrderRequest { order_id, action: OrderAction::State }),
            Some(_) => Err(RequestError::StateWithArguments),
        };
    }
    let Some((name, _)) = COMMANDS.iter().find(|(name, _)| command.eq_ignore_ascii_case(name.as_bytes())) else {
        return Err(RequestError::UnknownCommand(shown(command)));
    };
    let (command, command_id) = parse_command(name, json, tenant)?;
    Ok(OrderRequest { order_id, action: OrderAction::Run { name, command, command_id } })
}

fn parse_order_id(raw: &[u8]) -> Result<String, RequestError> {
    let text = std::str::from_utf8(raw).map_err(|_| RequestError::OrderId("must be UTF-8".into()))?;
    let id = order_id_of(text).unwrap_or(text);
    if id.is_empty() {
        return Err(RequestError::OrderId("must not be empty".into()));
    }
    if id.len() > MAX_ORDER_ID_BYTES {
        return Err(RequestError::OrderId(format!("is {} bytes, at most {MAX_ORDER_ID_BYTES} allowed", id.len())));
    }
    if id.chars().any(char::is_control) {
        return Err(RequestError::OrderId("must not contain control characters".into()));
    }
    Ok(id.to_string())
}

/// A client's word, shown safely in an error: at most 64 characters, control characters escaped.
fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Longest detail an error quotes from serde (which may quote the client's value).
const MAX_DETAIL_CHARS: usize = 200;

fn detail(err: serde_json::Error) -> String {
    shorten(&err.to_string(), MAX_DETAIL_CHARS)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

/// Money as a client writes it: exactly `{"amount": <integer minor units>, "currency": "EUR"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyArg {
    amount: u64,
    currency: String,
}

impl From<MoneyArg> for Money {
    fn from(m: MoneyArg) -> Money {
        Money { amount: m.amount, currency: m.currency }
    }
}

struct Fields {
    command: &'static str,
    object: Map<String, Json>,
}

impl Fields {
    /// A field that may be absent (or null).
    fn optional<T: DeserializeOwned>(&mut self, field: &'static str) -> Result<Option<T>, RequestError> {
        match self.object.remove(field) {
            None | Some(Json::Null) => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| RequestError::Field {
                command: self.command,
                field,
                detail: detail(e),
            }),
        }
    }

    fn required<T: DeserializeOwned>(&mut self, field: &'static str) -> Result<T, RequestError> {
        if !self.object.contains_key(field) {
            return Err(RequestError::MissingField { command: self.command, field });
        }
        let value = self.object.remove(field).unwrap_or(Json::Null);
        serde_json::from_value(value).map_err(|e| RequestError::Field {
            command: self.command,
            field,
            detail: detail(e),
        })
    }

    fn money(&mut self, field: &'static str) -> Result<Money, RequestError> {
        if let Some(value) = self.object.get(field).filter(|v| !v.is_object()) {
            let detail = format!(
                "money is {{\"amount\": <integer minor units>, \"currency\": \"<ISO 4217 code>\"}}, got {}",
                json_kind(value)
            );
            return Err(RequestError::Field { command: self.command, field, detail });
        }
        self.required::<MoneyArg>(field).map(Money::from)
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn parse_command(
    name: &'static str,
    json: Option<&[u8]>,
    tenant: Option<&str>,
) -> Result<(OrderCommand, Option<Uuid>), RequestError> {
    let object = match json {
        None => Map::new(),
        Some(raw) => {
            if raw.len() > MAX_ORDER_JSON_BYTES {
                return Err(RequestError::TooBig { command: name, len: raw.len() });
            }
            match serde_json::from_slice::<Json>(raw) {
                Ok(Json::Object(object)) => object,
                Ok(other) => return Err(RequestError::NotAnObject { command: name, kind: json_kind(&other) }),
                Err(e) => return Err(RequestError::Json { command: name, detail: detail(e) }),
            }
        }
    };
    let known = COMMANDS.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, fields)| *fields);
    if let Some(field) = object.keys().find(|k| k.as_str() != "id" && !known.contains(&k.as_str())) {
        let mut expected: Vec<String> = known.iter().map(|f| format!("\"{f}\"")).collect();
        expected.push("\"id\"".into());
        return Err(RequestError::UnknownField {
            command: name,
            field: shown(field.as_bytes()),
            expected: expected.join(", "),
        });
    }
    let mut f = Fields { command: name, object };
    let command_id: Option<Uuid> = f.optional("id")?;
    let command = match name {
        "CREATE_CART" => {
            let retailer_id = match tenant {
                Some(tenant) => match f.optional::<String>("retailer_id")? {
                    Some(given) if given != tenant => {
                        return Err(RequestError::Field {
                            command: name,
                            field: "retailer_id",
                            detail: format!("must be this tenant's own name '{tenant}' (or left out)"),
                        })
                    }
                    _ => tenant.to_string(),
                },
                None => f.required("retailer_id")?,
            };
            OrderCommand::CreateCart {
                retailer_id,
                customer_id: f.required("customer_id")?,
                currency: f.required("currency")?,
            }
        }
        "ADD_ITEM" => OrderCommand::AddItem {
            product_id: f.required("product_id")?,
            quantity: f.required("quantity")?,
            unit_price: f.money("unit_price")?,
        },
        "REMOVE_ITEM" => {
            OrderCommand::RemoveItem { product_id: f.required("product_id")?, quantity: f.required("quantity")? }
        }
        "START_CHECKOUT" => OrderCommand::StartCheckout,
        "CONFIRM_PAYMENT" => OrderCommand::ConfirmPayment {
            transaction_id: f.required("transaction_id")?,
            gateway: f.required("gateway")?,
            amount: f.money("amount")?,
        },
        "FAIL_PAYMENT" => OrderCommand::FailPayment { reason: f.required("reason")? },
        "PLACE_ORDER" => OrderCommand::PlaceOrder,
        "CANCEL_ITEM" => {
            OrderCommand::CancelItem { product_id: f.required("product_id")?, reason: f.required("reason")? }
        }
        "START_PROCESSING" => OrderCommand::StartProcessing,
        "SHIP" => OrderCommand::Ship { tracking: f.required("tracking")? },
        "FAIL_DELIVERY" => OrderCommand::FailDelivery { reason: f.required("reason")? },
        "DELIVER" => OrderCommand::Deliver,
        "CANCEL" => OrderCommand::Cancel { reason: f.required("reason")? },
        "ISSUE_REFUND" => OrderCommand::IssueRefund { amount: f.money("amount")? },
        other => return Err(RequestError::UnknownCommand(other.to_string())),
    };
    Ok((command, command_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<OrderRequest, RequestError> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        parse_request(&args, None)
    }

    fn err(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn commands_map_to_order_commands_with_their_fields() {
        let ship = parse(&["o-1", "ship", r#"{"tracking":"BD1"}"#]).unwrap();
        assert_eq!(ship.order_id, "o-1");
        assert_eq!(
            ship.action,
            OrderAction::Run { name: "SHIP", command: OrderCommand::Ship { tracking: "BD1".into() }, command_id: None }
        );
        let add = parse(&[
            "order-o-1",
            "ADD_ITEM",
            r#"{"product_id":"p","quantity":2,"unit_price":{"amount":1999,"currency":"EUR"},"id":"6558fb4a-a64d-4452-b1d1-3cf2a5d33103"}"#,
        ])
        .unwrap();
        assert_eq!(add.order_id, "o-1", "a leading order- is the stream's prefix");
        let OrderAction::Run { command, command_id, .. } = add.action else { panic!() };
        assert_eq!(
            command,
            OrderCommand::AddItem { product_id: "p".into(), quantity: 2, unit_price: Money::new(1999, "EUR") }
        );
        assert_eq!(command_id.unwrap().to_string(), "6558fb4a-a64d-4452-b1d1-3cf2a5d33103");
        for bare in ["START_CHECKOUT", "PLACE_ORDER", "START_PROCESSING", "DELIVER"] {
            assert!(parse(&["o", bare]).is_ok(), "{bare} without JSON");
            assert!(parse(&["o", bare, "{}"]).is_ok(), "{bare} with {{}}");
        }
        assert_eq!(parse(&["o", "state"]).unwrap().action, OrderAction::State);
    }

    #[test]
    fn a_tenant_is_the_retailer_of_its_carts() {
        let args = |json: &str| vec![b"o".to_vec(), b"CREATE_CART".to_vec(), json.as_bytes().to_vec()];
        let ok = parse_request(&args(r#"{"customer_id":"c","currency":"EUR"}"#), Some("acme")).unwrap();
        let OrderAction::Run { command: OrderCommand::CreateCart { retailer_id, .. }, .. } = ok.action else {
            panic!()
        };
        assert_eq!(retailer_id, "acme");
        let err = parse_request(&args(r#"{"retailer_id":"globex","customer_id":"c","currency":"EUR"}"#), Some("acme"));
        assert!(err.unwrap_err().to_string().contains("\"retailer_id\": must be this tenant's own name 'acme'"));
        let err = parse_request(&args(r#"{"customer_id":"c","currency":"EUR"}"#), None).unwrap_err();
        assert_eq!(err.to_string(), "CREATE_CART: missing field \"retailer_id\"");
    }

    #[test]
    fn errors_name_what_was_wrong() {
        for (args, needle) in [
            (&["o"][..], "wrong number of arguments for 'ORDER'"),
            (&["o", "SHIP", "{}", "x"][..], "wrong number of arguments"),
            (&["", "SHIP"][..], "order id must not be empty"),
            (&["order-", "SHIP"][..], "order id must not be empty"),
            (&["a\nb", "STATE"][..], "order id must not contain control characters"),
            (&["o", "FLY"][..], "unknown ORDER command 'FLY': expected STATE or one of CREATE_CART, ADD_ITEM"),
            (&["o", "STATE", "{}"][..], "STATE takes no JSON arguments"),
            (&["o", "SHIP"][..], "SHIP: missing field \"tracking\""),
            (&["o", "SHIP", "{"][..], "SHIP: the JSON arguments are not valid JSON"),
            (&["o", "SHIP", "[]"][..], "SHIP: the JSON arguments must be an object, got an array"),
            (
                &["o", "SHIP", r#"{"tracking":"x","carrier":"y"}"#][..],
                "SHIP: unknown field \"carrier\" (expected \"tracking\", \"id\")",
            ),
            (
                &["o", "SHIP", r#"{"tracking":7}"#][..],
                "SHIP: field \"tracking\": invalid type: integer `7`, expected a string",
            ),
            (&["o", "SHIP", r#"{"tracking":null}"#][..], "SHIP: field \"tracking\": invalid type: null"),
            (&["o", "SHIP", r#"{"tracking":"x","id":"nope"}"#][..], "SHIP: field \"id\""),
            (
                &["o", "REMOVE_ITEM", r#"{"product_id":"p","quantity":-1}"#][..],
                "REMOVE_ITEM: field \"quantity\": invalid value",
            ),
            (&["o", "REMOVE_ITEM", r#"{"product_id":"p","quantity":1.5}"#][..], "field \"quantity\""),
            (&["o", "ISSUE_REFUND", r#"{"amount":12.5}"#][..], "ISSUE_REFUND: field \"amount\": money is {\"amount\": <integer minor units>, \"currency\": \"<ISO 4217 code>\"}, got a number"),
            (&["o", "ISSUE_REFUND", r#"{"amount":{"amount":1}}"#][..], "field \"amount\": missing field `currency`"),
            (
                &["o", "ISSUE_REFUND", r#"{"amount":{"amount":1,"currency":"EUR","x":1}}"#][..],
                "field \"amount\": unknown field `x`",
            ),
            (&["o", "DELIVER", r#"{"when":"now"}"#][..], "DELIVER: unknown field \"when\" (expected \"id\")"),
        ] {
            let text = err(args);
            assert!(text.contains(needle), "{args:?}: {text}");
        }
        let long = format!(r#"{{"product_id":"p","quantity":"{}"}}"#, "x".repeat(1000));
        let text = err(&["o", "REMOVE_ITEM", &long]);
        assert!(text.len() < 300 && text.ends_with('…'), "an error quotes at most 200 characters: {text}");
        let big = format!(r#"{{"tracking":"{}"}}"#, "x".repeat(MAX_ORDER_JSON_BYTES));
        assert!(err(&["o", "SHIP", &big]).contains("at most 65536 allowed"));
        assert!(err(&["o", &"x".repeat(300)]).contains("unknown ORDER command 'xxxx"), "a long word is cut");
        assert!(err(&[&"x".repeat(MAX_ORDER_ID_BYTES + 1), "STATE"]).contains("order id is 257 bytes"));
    }
}
