//! The order aggregate: money, metadata, events, the state machine, commands.
//!
//! The state machine is defined once, on events ([`allowed_from`] and [`Order::check`]);
//! commands map to one event each and are accepted exactly when their event is. A replay of
//! stored events can therefore be checked with the same rules ([`super::validate_history`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use logbook_es::aggregate::Aggregate;

/// Largest quantity of one product in one command.
pub const MAX_QUANTITY: u32 = 10_000;
/// Largest amount (minor units) of one price, payment or refund: 10^12 (ten billion in a
/// two-decimal currency), so sums of up to [`MAX_LINES`] lines never overflow a u64.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000;
/// Most distinct products in one cart.
pub const MAX_LINES: usize = 1000;
/// Longest identifier, reason or tracking string accepted in a command (bytes).
pub const MAX_TEXT_BYTES: usize = 256;

/// An amount of money: an integer in the currency's minor unit (cents, pence, yen), never a float.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units.
    pub amount: u64,
    /// ISO 4217 code: three upper-case ASCII letters.
    pub currency: String,
}

impl Money {
    pub fn new(amount: u64, currency: &str) -> Self {
        Money { amount, currency: currency.to_string() }
    }
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217; 2 unless listed).
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

impl fmt::Display for Money {
    /// `19.99 EUR`, `500 JPY`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = minor_unit_digits(&self.currency);
        if digits == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let scale = 10u64.pow(digits);
        write!(f, "{}.{:0width$} {}", self.amount / scale, self.amount % scale, self.currency, width = digits as usize)
    }
}

fn valid_currency(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Customer,
    System,
    Agent,
    Admin,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Actor::Customer => "customer",
            Actor::System => "system",
            Actor::Agent => "agent",
            Actor::Admin => "admin",
        })
    }
}

/// The metadata JSON of every order event (the `schema` key is added by the repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMetadata {
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// The tenant.
    pub retailer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Ties together every event of one user journey or request chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event (or command) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Schema version of the event's data (absent = 1); written by the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
}

impl OrderMetadata {
    pub fn new(actor: Actor, retailer_id: &str) -> Self {
        OrderMetadata {
            actor,
            actor_id: None,
            retailer_id: retailer_id.to_string(),
            customer_id: None,
            ip_address: None,
            user_agent: None,
            correlation_id: None,
            causation_id: None,
            schema: None,
        }
    }
    /// A customer acting for themselves (`actor_id` = `customer_id`).
    pub fn customer(retailer_id: &str, customer_id: &str) -> Self {
        OrderMetadata { actor_id: Some(customer_id.to_string()), ..Self::new(Actor::Customer, retailer_id) }
            .with_customer(customer_id)
    }
    pub fn system(retailer_id: &str) -> Self {
        Self::new(Actor::System, retailer_id)
    }
    pub fn admin(retailer_id: &str, admin_id: &str) -> Self {
        OrderMetadata { actor_id: Some(admin_id.to_string()), ..Self::new(Actor::Admin, retailer_id) }
    }
    pub fn agent(retailer_id: &str, agent_id: &str) -> Self {
        OrderMetadata { actor_id: Some(agent_id.to_string()), ..Self::new(Actor::Agent, retailer_id) }
    }
    pub fn with_customer(mut self, customer_id: &str) -> Self {
        self.customer_id = Some(customer_id.to_string());
        self
    }
    pub fn with_ip(mut self, ip: &str) -> Self {
        self.ip_address = Some(ip.to_string());
        self
    }
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = Some(user_agent.to_string());
        self
    }
    pub fn with_correlation(mut self, id: &str) -> Self {
        self.correlation_id = Some(id.to_string());
        self
    }
    pub fn with_causation(mut self, id: &str) -> Self {
        self.causation_id = Some(id.to_string());
        self
    }
}

/// The states of the order lifecycle, plus `NEW` (no events yet) and `CANCELLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OrderStatus {
    New,
    CartCreated,
    CheckoutStarted,
    PaymentFailed,
    PaymentConfirmed,
    OrderPlaced,
    PartiallyCancelled,
    Processing,
    Shipped,
    DeliveryFailed,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 12] = [
        OrderStatus::New,
        OrderStatus::CartCreated,
        OrderStatus::CheckoutStarted,
        OrderStatus::PaymentFailed,
        OrderStatus::PaymentConfirmed,
        OrderStatus::OrderPlaced,
        OrderStatus::PartiallyCancelled,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::DeliveryFailed,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "NEW",
            OrderStatus::CartCreated => "CART_CREATED",
            OrderStatus::CheckoutStarted => "CHECKOUT_STARTED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::PaymentConfirmed => "PAYMENT_CONFIRMED",
            OrderStatus::OrderPlaced => "ORDER_PLACED",
            OrderStatus::PartiallyCancelled => "PARTIALLY_CANCELLED",
            OrderStatus::Processing => "PROCESSING",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::DeliveryFailed => "DELIVERY_FAILED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Event type names, as stored.
pub mod event_types {
    pub const CART_CREATED: &str = "CART_CREATED";
    pub const ITEM_ADDED: &str = "ITEM_ADDED";
    pub const ITEM_REMOVED: &str = "ITEM_REMOVED";
    pub const CHECKOUT_STARTED: &str = "CHECKOUT_STARTED";
    pub const PAYMENT_CONFIRMED: &str = "PAYMENT_CONFIRMED";
    pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";
    pub const ORDER_PLACED: &str = "ORDER_PLACED";
    pub const ITEM_CANCELLED: &str = "ITEM_CANCELLED";
    pub const STATUS_UPDATED: &str = "STATUS_UPDATED";
    pub const SHIPPED: &str = "SHIPPED";
    pub const DELIVERY_FAILED: &str = "DELIVERY_FAILED";
    pub const DELIVERED: &str = "DELIVERED";
    pub const ORDER_CANCELLED: &str = "ORDER_CANCELLED";
    pub const REFUND_ISSUED: &str = "REFUND_ISSUED";
    /// Every order event type, in lifecycle order.
    pub const ALL: [&str; 14] = [
        CART_CREATED,
        ITEM_ADDED,
        ITEM_REMOVED,
        CHECKOUT_STARTED,
        PAYMENT_CONFIRMED,
        PAYMENT_FAILED,
        ORDER_PLACED,
        ITEM_CANCELLED,
        STATUS_UPDATED,
        SHIPPED,
        DELIVERY_FAILED,
        DELIVERED,
        ORDER_CANCELLED,
        REFUND_ISSUED,
    ];
}
use event_types as et;

/// Current schema version of ITEM_ADDED (v1 had no `unit_price`).
pub const ITEM_ADDED_SCHEMA: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartCreated {
    pub retailer_id: String,
    pub customer_id: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemAdded {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRemoved {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentConfirmed {
    pub transaction_id: String,
    pub gateway: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCancelled {
    pub product_id: String,
    pub reason: String,
}

/// The only status STATUS_UPDATED moves to in the order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatedStatus {
    Processing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdated {
    pub to: UpdatedStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    pub tracking: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIssued {
    pub amount: Money,
}

/// An order event. Its stored type is [`OrderEvent::event_type`]; its data the payload as JSON
/// (`{}` for the events without a payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    CartCreated(CartCreated),
    ItemAdded(ItemAdded),
    ItemRemoved(ItemRemoved),
    CheckoutStarted,
    PaymentConfirmed(PaymentConfirmed),
    PaymentFailed(Reason),
    OrderPlaced,
    ItemCancelled(ItemCancelled),
    StatusUpdated(StatusUpdated),
    Shipped(Shipped),
    DeliveryFailed(Reason),
    Delivered,
    OrderCancelled(Reason),
    RefundIssued(RefundIssued),
}

impl OrderEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::CartCreated(_) => et::CART_CREATED,
            OrderEvent::ItemAdded(_) => et::ITEM_ADDED,
            OrderEvent::ItemRemoved(_) => et::ITEM_REMOVED,
            OrderEvent::CheckoutStarted => et::CHECKOUT_STARTED,
            OrderEvent::PaymentConfirmed(_) => et::PAYMENT_CONFIRMED,
            OrderEvent::PaymentFailed(_) => et::PAYMENT_FAILED,
            OrderEvent::OrderPlaced => et::ORDER_PLACED,
            OrderEvent::ItemCancelled(_) => et::ITEM_CANCELLED,
            OrderEvent::StatusUpdated(_) => et::STATUS_UPDATED,
            OrderEvent::Shipped(_) => et::SHIPPED,
            OrderEvent::DeliveryFailed(_) => et::DELIVERY_FAILED,
            OrderEvent::Delivered => et::DELIVERED,
            OrderEvent::OrderCancelled(_) => et::ORDER_CANCELLED,
            OrderEvent::RefundIssued(_) => et::REFUND_ISSUED,
        }
    }

    /// The JSON data of the event.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            OrderEvent::CartCreated(p) => serde_json::to_vec(p),
            OrderEvent::ItemAdded(p) => serde_json::to_vec(p),
            OrderEvent::ItemRemoved(p) => serde_json::to_vec(p),
            OrderEvent::PaymentConfirmed(p) => serde_json::to_vec(p),
            OrderEvent::PaymentFailed(p) | OrderEvent::DeliveryFailed(p) | OrderEvent::OrderCancelled(p) => {
                serde_json::to_vec(p)
            }
            OrderEvent::ItemCancelled(p) => serde_json::to_vec(p),
            OrderEvent::StatusUpdated(p) => serde_json::to_vec(p),
            OrderEvent::Shipped(p) => serde_json::to_vec(p),
            OrderEvent::RefundIssued(p) => serde_json::to_vec(p),
            OrderEvent::CheckoutStarted | OrderEvent::OrderPlaced | OrderEvent::Delivered => Ok(b"{}".to_vec()),
        }
    }

    /// Parses an event of `event_type` from its JSON data (current schema). Unknown fields are
    /// allowed (order payloads are loose by design: shops add their own fields); missing ones are errors.
    pub fn from_json(event_type: &str, data: &[u8]) -> Result<OrderEvent, String> {
        fn parse<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, String> {
            serde_json::from_slice(data).map_err(|e| e.to_string())
        }
        Ok(match event_type {
            et::CART_CREATED => OrderEvent::CartCreated(parse(data)?),
            et::ITEM_ADDED => OrderEvent::ItemAdded(parse(data)?),
            et::ITEM_REMOVED => OrderEvent::ItemRemoved(parse(data)?),
            et::CHECKOUT_STARTED => OrderEvent::CheckoutStarted,
            et::PAYMENT_CONFIRMED => OrderEvent::PaymentConfirmed(parse(data)?),
            et::PAYMENT_FAILED => OrderEvent::PaymentFailed(parse(data)?),
            et::ORDER_PLACED => OrderEvent::OrderPlaced,
            et::ITEM_CANCELLED => OrderEvent::ItemCancelled(parse(data)?),
            et::STATUS_UPDATED => OrderEvent::StatusUpdated(parse(data)?),
            et::SHIPPED => OrderEvent::Shipped(parse(data)?),
            et::DELIVERY_FAILED => OrderEvent::DeliveryFailed(parse(data)?),
            et::DELIVERED => OrderEvent::Delivered,
            et::ORDER_CANCELLED => OrderEvent::OrderCancelled(parse(data)?),
            et::REFUND_ISSUED => OrderEvent::RefundIssued(parse(data)?),
            other => return Err(format!("unknown order event type '{other}'")),
        })
    }
}

/// The states an event of `event_type` may follow (the arrows of the diagram).
pub fn allowed_from(event_type: &str) -> &'static [OrderStatus] {
    use OrderStatus::*;
    match event_type {
        et::CART_CREATED => &[New],
        et::ITEM_ADDED | et::ITEM_REMOVED | et::CHECKOUT_STARTED => &[CartCreated],
        et::PAYMENT_CONFIRMED | et::PAYMENT_FAILED => &[CheckoutStarted],
        et::ORDER_PLACED => &[PaymentConfirmed],
        et::ITEM_CANCELLED | et::STATUS_UPDATED => &[OrderPlaced, PartiallyCancelled],
        et::SHIPPED => &[Processing],
        et::DELIVERY_FAILED | et::DELIVERED => &[Shipped],
        et::ORDER_CANCELLED => &[
            CartCreated,
            CheckoutStarted,
            PaymentFailed,
            PaymentConfirmed,
            OrderPlaced,
            PartiallyCancelled,
            Processing,
            DeliveryFailed,
        ],
        et::REFUND_ISSUED => &[
            PaymentConfirmed,
            OrderPlaced,
            PartiallyCancelled,
            Processing,
            Shipped,
            DeliveryFailed,
            Delivered,
            Cancelled,
        ],
        _ => &[],
    }
}

/// The state an event leads to from `from` (events that keep the state return `from`).
fn target(event: &OrderEvent, from: OrderStatus) -> OrderStatus {
    match event {
        OrderEvent::CartCreated(_) => OrderStatus::CartCreated,
        OrderEvent::ItemAdded(_) | OrderEvent::ItemRemoved(_) | OrderEvent::RefundIssued(_) => from,
        OrderEvent::CheckoutStarted => OrderStatus::CheckoutStarted,
        OrderEvent::PaymentConfirmed(_) => OrderStatus::PaymentConfirmed,
        OrderEvent::PaymentFailed(_) => OrderStatus::PaymentFailed,
        OrderEvent::OrderPlaced => OrderStatus::OrderPlaced,
        OrderEvent::ItemCancelled(_) => OrderStatus::PartiallyCancelled,
        OrderEvent::StatusUpdated(_) => OrderStatus::Processing,
        OrderEvent::Shipped(_) => OrderStatus::Shipped,
        OrderEvent::DeliveryFailed(_) => OrderStatus::DeliveryFailed,
        OrderEvent::Delivered => OrderStatus::Delivered,
        OrderEvent::OrderCancelled(_) => OrderStatus::Cancelled,
    }
}

/// One line of the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub quantity: u32,
    /// Minor units of the order's currency.
    pub unit_price: u64,
}

/// The state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub status: OrderStatus,
    pub retailer_id: String,
    pub customer_id: String,
    pub currency: String,
    /// Active lines, by product id.
    pub items: BTreeMap<String, Line>,
    /// Lines cancelled after placement (out of stock), with the reason.
    pub cancelled_items: BTreeMap<String, (Line, String)>,
    /// Amount captured by the payment (minor units).
    pub paid: u64,
    /// Amount refunded so far (minor units).
    pub refunded: u64,
    pub transaction_id: Option<String>,
    pub gateway: Option<String>,
    pub tracking: Option<String>,
    /// The reason of the last payment or delivery failure.
    pub last_failure: Option<String>,
    pub cancel_reason: Option<String>,
}

/// Why an event may not follow the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The state machine has no arrow for it.
    State { allowed: &'static [OrderStatus] },
    /// The arrow exists, but a rule of the domain forbids it in this state (names the rule).
    Rule(String),
    /// A value of the event is malformed whatever the state (an empty text, a quantity or
    /// amount out of range, a currency code that is not one): the caller's input, not the
    /// order, is wrong.
    Argument(String),
}

/// A rejected command: names the command and the order's state. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("cannot {command}: the order is {state}; {command} is only allowed when it is {}", list(.allowed))]
    InvalidTransition { command: &'static str, state: OrderStatus, allowed: Vec<OrderStatus> },
    #[error("cannot {command} (order is {state}): {reason}")]
    Rejected { command: &'static str, state: OrderStatus, reason: String },
    /// A malformed argument ([`Violation::Argument`]): retrying in another state cannot help.
    #[error("cannot {command}: {reason}")]
    InvalidArgument { command: &'static str, reason: String },
}

fn list(states: &[OrderStatus]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    if names.is_empty() {
        "never".to_string()
    } else {
        names.join(" or ")
    }
}

/// Commands: each decides at most one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    CreateCart {
        retailer_id: String,
        customer_id: String,
        currency: String,
    },
    AddItem {
        product_id: String,
        quantity: u32,
        unit_price: Money,
    },
    RemoveItem {
        product_id: String,
        quantity: u32,
    },
    StartCheckout,
    ConfirmPayment {
        transaction_id: String,
        gateway: String,
        amount: Money,
    },
    FailPayment {
        reason: String,
    },
    PlaceOrder,
    /// An item turned out to be out of stock after placement.
    CancelItem {
        product_id: String,
        reason: String,
    },
    StartProcessing,
    Ship {
        tracking: String,
    },
    FailDelivery {
        reason: String,
    },
    Deliver,
    Cancel {
        reason: String,
    },
    IssueRefund {
        amount: Money,
    },
}

impl OrderCommand {
    pub fn name(&self) -> &'static str {
        match self {
            OrderCommand::CreateCart { .. } => "CreateCart",
            OrderCommand::AddItem { .. } => "AddItem",
            OrderCommand::RemoveItem { .. } => "RemoveItem",
            OrderCommand::StartCheckout => "StartCheckout",
            OrderCommand::ConfirmPayment { .. } => "ConfirmPayment",
            OrderCommand::FailPayment { .. } => "FailPayment",
            OrderCommand::PlaceOrder => "PlaceOrder",
            OrderCommand::CancelItem { .. } => "CancelItem",
            OrderCommand::StartProcessing => "StartProcessing",
            OrderCommand::Ship { .. } => "Ship",
            OrderCommand::FailDelivery { .. } => "FailDelivery",
            OrderCommand::Deliver => "Deliver",
            OrderCommand::Cancel { .. } => "Cancel",
            OrderCommand::IssueRefund { .. } => "IssueRefund",
        }
    }

    /// The event this command asks for (before any check).
    pub fn to_event(&self) -> OrderEvent {
        match self.clone() {
            OrderCommand::CreateCart { retailer_id, customer_id, currency } => {
                OrderEvent::CartCreated(CartCreated { retailer_id, customer_id, currency })
            }
            OrderCommand::AddItem { product_id, quantity, unit_price } => {
                OrderEvent::ItemAdded(ItemAdded { product_id, quantity, unit_price })
            }
            OrderCommand::RemoveItem { product_id, quantity } => {
                OrderEvent::ItemRemoved(ItemRemoved { product_id, quantity })
            }
            OrderCommand::StartCheckout => OrderEvent::CheckoutStarted,
            OrderCommand::ConfirmPayment { transaction_id, gateway, amount } => {
                OrderEvent::PaymentConfirmed(PaymentConfirmed { transaction_id, gateway, amount })
            }
            OrderCommand::FailPayment { reason } => OrderEvent::PaymentFailed(Reason { reason }),
            OrderCommand::PlaceOrder => OrderEvent::OrderPlaced,
            OrderCommand::CancelItem { product_id, reason } => {
                OrderEvent::ItemCancelled(ItemCancelled { product_id, reason })
            }
            OrderCommand::StartProcessing => OrderEvent::StatusUpdated(StatusUpdated { to: UpdatedStatus::Processing }),
            OrderCommand::Ship { tracking } => OrderEvent::Shipped(Shipped { tracking }),
            OrderCommand::FailDelivery { reason } => OrderEvent::DeliveryFailed(Reason { reason }),
            OrderCommand::Deliver => OrderEvent::Delivered,
            OrderCommand::Cancel { reason } => OrderEvent::OrderCancelled(Reason { reason }),
            OrderCommand::IssueRefund { amount } => OrderEvent::RefundIssued(RefundIssued { amount }),
        }
    }
}

fn rule(reason: impl Into<String>) -> Result<(), Violation> {
    Err(Violation::Rule(reason.into()))
}

fn malformed(reason: impl Into<String>) -> Result<(), Violation> {
    Err(Violation::Argument(reason.into()))
}

fn text_ok(what: &str, value: &str) -> Result<(), Violation> {
    if value.is_empty() || value.len() > MAX_TEXT_BYTES {
        return malformed(format!("{what} must be 1..={MAX_TEXT_BYTES} bytes"));
    }
    Ok(())
}

impl Order {
    /// The order total: the active lines (minor units).
    pub fn total(&self) -> u64 {
        self.items
            .values()
            .fold(0u64, |sum, line| sum.saturating_add(u64::from(line.quantity).saturating_mul(line.unit_price)))
    }

    /// Money captured and not refunded.
    pub fn balance(&self) -> u64 {
        self.paid.saturating_sub(self.refunded)
    }

    fn money_ok(&self, what: &str, money: &Money) -> Result<(), Violation> {
        if money.amount == 0 || money.amount > MAX_AMOUNT_MINOR {
            return malformed(format!("{what} must be 1..={MAX_AMOUNT_MINOR} minor units"));
        }
        if money.currency != self.currency {
            return rule(format!("{what} is in {}, the order is in {}", money.currency, self.currency));
        }
        Ok(())
    }

    /// Whether `event` may follow this state: the diagram's arrows, then the domain's rules.
    pub fn check(&self, event: &OrderEvent) -> Result<(), Violation> {
        let allowed = allowed_from(event.event_type());
        if !allowed.contains(&self.status) {
            return Err(Violation::State { allowed });
        }
        match event {
            OrderEvent::CartCreated(e) => {
                text_ok("retailer_id", &e.retailer_id)?;
                text_ok("customer_id", &e.customer_id)?;
                if !valid_currency(&e.currency) {
                    return malformed(format!("currency '{}' is not a three-letter ISO 4217 code", e.currency));
                }
            }
            OrderEvent::ItemAdded(e) => {
                text_ok("product_id", &e.product_id)?;
                self.money_ok("unit_price", &e.unit_price)?;
                if e.quantity == 0 || e.quantity > MAX_QUANTITY {
                    return malformed(format!("quantity must be 1..={MAX_QUANTITY}"));
                }
                // A cart one payment cannot pay would be a dead end (CONFIRM_PAYMENT takes at
                // most MAX_AMOUNT_MINOR), and its total would overflow long before MAX_LINES.
                let total = self.total().saturating_add(u64::from(e.quantity).saturating_mul(e.unit_price.amount));
                if total > MAX_AMOUNT_MINOR {
                    return rule(format!(
                        "the order total would be {}, more than one payment can take ({})",
                        Money::new(total, &self.currency),
                        Money::new(MAX_AMOUNT_MINOR, &self.currency)
                    ));
                }
                match self.items.get(&e.product_id) {
                    Some(line) if line.unit_price != e.unit_price.amount => {
                        return rule(format!("{} is already in the cart at another price", e.product_id));
                    }
                    Some(line) if line.quantity.saturating_add(e.quantity) > MAX_QUANTITY => {
                        return rule(format!("more than {MAX_QUANTITY} of {}", e.product_id));
                    }
                    None if self.items.len() >= MAX_LINES => return rule(format!("more than {MAX_LINES} lines")),
                    _ => {}
                }
            }
            OrderEvent::ItemRemoved(e) => match self.items.get(&e.product_id) {
                None => return rule(format!("{} is not in the cart", e.product_id)),
                Some(line) if e.quantity == 0 || e.quantity > line.quantity => {
                    return rule(format!("can remove 1..={} of {}", line.quantity, e.product_id));
                }
                Some(_) => {}
            },
            OrderEvent::CheckoutStarted if self.items.is_empty() => return rule("the cart is empty"),
            OrderEvent::PaymentConfirmed(e) => {
                text_ok("transaction_id", &e.transaction_id)?;
                text_ok("gateway", &e.gateway)?;
                self.money_ok("amount", &e.amount)?;
                if e.amount.amount != self.total() {
                    return rule(format!(
                        "payment of {} does not match the order total {}",
                        e.amount,
                        self.total_money()
                    ));
                }
            }
            OrderEvent::ItemCancelled(e) => {
                text_ok("reason", &e.reason)?;
                if !self.items.contains_key(&e.product_id) {
                    return rule(format!("{} is not an active line of the order", e.product_id));
                }
                if self.items.len() == 1 {
                    return rule("it is the last active line: cancel the order instead");
                }
            }
            OrderEvent::Shipped(e) => text_ok("tracking", &e.tracking)?,
            OrderEvent::PaymentFailed(e) | OrderEvent::DeliveryFailed(e) | OrderEvent::OrderCancelled(e) => {
                text_ok("reason", &e.reason)?
            }
            OrderEvent::RefundIssued(e) => {
                self.money_ok("refund", &e.amount)?;
                if e.amount.amount > self.balance() {
                    let balance = Money::new(self.balance(), &self.currency);
                    return rule(format!("refund of {} exceeds the {} paid and not yet refunded", e.amount, balance));
                }
            }
            OrderEvent::CheckoutStarted
            | OrderEvent::OrderPlaced
            | OrderEvent::StatusUpdated(_)
            | OrderEvent::Delivered => {}
        }
        Ok(())
    }

    /// The total as money.
    pub fn total_money(&self) -> Money {
        Money::new(self.total(), &self.currency)
    }
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    const SCHEMA_VERSION: u32 = 1;

    fn initial() -> Self {
        Order {
            status: OrderStatus::New,
            retailer_id: String::new(),
            customer_id: String::new(),
            currency: String::new(),
            items: BTreeMap::new(),
            cancelled_items: BTreeMap::new(),
            paid: 0,
            refunded: 0,
            transaction_id: None,
            gateway: None,
            tracking: None,
            last_failure: None,
            cancel_reason: None,
        }
    }

    /// Total and pure: an event is a fact, so even one the state machine would have refused
    /// (written around the repository) is folded in; [`super::validate_history`] finds those.
    fn apply(&mut self, event: &OrderEvent) {
        self.status = target(event, self.status);
        match event {
            OrderEvent::CartCreated(e) => {
                self.retailer_id.clone_from(&e.retailer_id);
                self.customer_id.clone_from(&e.customer_id);
                self.currency.clone_from(&e.currency);
            }
            OrderEvent::ItemAdded(e) => {
                let line = self.items.entry(e.product_id.clone()).or_insert(Line { quantity: 0, unit_price: 0 });
                line.quantity = line.quantity.saturating_add(e.quantity);
                line.unit_price = e.unit_price.amount;
            }
            OrderEvent::ItemRemoved(e) => {
                if let Some(line) = self.items.get_mut(&e.product_id) {
                    line.quantity = line.quantity.saturating_sub(e.quantity);
                    if line.quantity == 0 {
                        self.items.remove(&e.product_id);
                    }
                }
            }
            OrderEvent::PaymentConfirmed(e) => {
                self.paid = self.paid.saturating_add(e.amount.amount);
                self.transaction_id = Some(e.transaction_id.clone());
                self.gateway = Some(e.gateway.clone());
            }
            OrderEvent::PaymentFailed(e) | OrderEvent::DeliveryFailed(e) => self.last_failure = Some(e.reason.clone()),
            OrderEvent::ItemCancelled(e) => {
                if let Some(line) = self.items.remove(&e.product_id) {
                    self.cancelled_items.insert(e.product_id.clone(), (line, e.reason.clone()));
                }
            }
            OrderEvent::Shipped(e) => self.tracking = Some(e.tracking.clone()),
            OrderEvent::OrderCancelled(e) => self.cancel_reason = Some(e.reason.clone()),
            OrderEvent::RefundIssued(e) => self.refunded = self.refunded.saturating_add(e.amount.amount),
            OrderEvent::CheckoutStarted
            | OrderEvent::OrderPlaced
            | OrderEvent::StatusUpdated(_)
            | OrderEvent::Delivered => {}
        }
    }

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let event = command.to_event();
        match self.check(&event) {
            Ok(()) => Ok(vec![event]),
            Err(Violation::State { allowed }) => Err(OrderError::InvalidTransition {
                command: command.name(),
                state: self.status,
                allowed: allowed.to_vec(),
            }),
            Err(Violation::Rule(reason)) => {
                Err(OrderError::Rejected { command: command.name(), state: self.status, reason })
            }
            Err(Violation::Argument(reason)) => Err(OrderError::InvalidArgument { command: command.name(), reason }),
        }
    }

    fn encode_event(event: &OrderEvent) -> Result<(&'static str, Vec<u8>), String> {
        Ok((event.event_type(), event.to_json().map_err(|e| e.to_string())?))
    }

    fn decode_event(event_type: &str, data: &[u8]) -> Result<OrderEvent, String> {
        OrderEvent::from_json(event_type, data)
    }

    fn event_schema(event_type: &str) -> u32 {
        if event_type == et::ITEM_ADDED {
            ITEM_ADDED_SCHEMA
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_displays_in_major_units() {
        assert_eq!(Money::new(1999, "EUR").to_string(), "19.99 EUR");
        assert_eq!(Money::new(5, "USD").to_string(), "0.05 USD");
        assert_eq!(Money::new(500, "JPY").to_string(), "500 JPY");
        assert_eq!(Money::new(1234, "KWD").to_string(), "1.234 KWD");
    }

    #[test]
    fn every_event_round_trips_through_json() {
        let events = vec![
            OrderEvent::CartCreated(CartCreated {
                retailer_id: "r".into(),
                customer_id: "c".into(),
                currency: "EUR".into(),
            }),
            OrderEvent::ItemAdded(ItemAdded { product_id: "p".into(), quantity: 2, unit_price: Money::new(5, "EUR") }),
            OrderEvent::ItemRemoved(ItemRemoved { product_id: "p".into(), quantity: 1 }),
            OrderEvent::CheckoutStarted,
            OrderEvent::PaymentConfirmed(PaymentConfirmed {
                transaction_id: "t".into(),
                gateway: "g".into(),
                amount: Money::new(5, "EUR"),
            }),
            OrderEvent::PaymentFailed(Reason { reason: "x".into() }),
            OrderEvent::OrderPlaced,
            OrderEvent::ItemCancelled(ItemCancelled { product_id: "p".into(), reason: "oos".into() }),
            OrderEvent::StatusUpdated(StatusUpdated { to: UpdatedStatus::Processing }),
            OrderEvent::Shipped(Shipped { tracking: "T".into() }),
            OrderEvent::DeliveryFailed(Reason { reason: "x".into() }),
            OrderEvent::Delivered,
            OrderEvent::OrderCancelled(Reason { reason: "x".into() }),
            OrderEvent::RefundIssued(RefundIssued { amount: Money::new(5, "EUR") }),
        ];
        assert_eq!(events.len(), event_types::ALL.len());
        for event in events {
            let (t, data) = Order::encode_event(&event).unwrap();
            assert_eq!(Order::decode_event(t, &data).unwrap(), event);
        }
        assert_eq!(
            OrderEvent::StatusUpdated(StatusUpdated { to: UpdatedStatus::Processing }).to_json().unwrap(),
            br#"{"to":"processing"}"#
        );
    }

    #[test]
    fn delivered_before_shipped_is_refused() {
        let mut order = Order::initial();
        for event in [
            OrderCommand::CreateCart { retailer_id: "r".into(), customer_id: "c".into(), currency: "EUR".into() },
            OrderCommand::AddItem { product_id: "p".into(), quantity: 1, unit_price: Money::new(100, "EUR") },
            OrderCommand::StartCheckout,
        ] {
            let events = order.handle(&event).unwrap();
            order.apply(&events[0]);
        }
        let err = order.handle(&OrderCommand::Deliver).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot Deliver: the order is CHECKOUT_STARTED; Deliver is only allowed when it is SHIPPED"
        );
    }
}
