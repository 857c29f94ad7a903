//! The realistic order workload of design.md: order lifecycles whose events carry varied JSON
//! payloads (ids, SKUs, quantities, amounts, addresses, tracking numbers) and metadata
//! (correlation and causation ids, actor, source, timestamps), drawn from a seeded SplitMix64.
//!
//! Sizes follow the peers' measurement: a 471-byte JSON line per event, of which the payload
//! is 107–173 bytes and the metadata about 110; the rest is the id, type and stream. Nothing is
//! padded with filler: what compresses here is what compresses in real order traffic (repeated
//! key names, shared vocabularies, ids that repeat inside one order), and what does not (random
//! ids, amounts, tracking numbers) is random. Deterministic per seed and order: any order's
//! events can be made alone ([`RealisticOrders::order_events`]).

use logbook::NewEvent;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

/// Smallest and largest payload the generator writes (design.md: 107–173 B).
pub const PAYLOAD_BYTES: std::ops::RangeInclusive<usize> = 107..=173;

/// Generator of realistic order events: `seed` picks everything but the event ids (the store
/// draws those) and the store's own timestamps.
#[derive(Debug, Clone, Copy)]
pub struct RealisticOrders {
    pub seed: u64,
}

impl Default for RealisticOrders {
    fn default() -> Self {
        RealisticOrders { seed: 0x0BDE_2026 }
    }
}

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// `n` characters of `alphabet`.
    fn token(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }
    fn hex(&mut self, n: usize) -> String {
        self.token(b"0123456789abcdef", n)
    }
    fn alnum(&mut self, n: usize) -> String {
        self.token(b"abcdefghijklmnopqrstuvwxyz0123456789", n)
    }
    fn digits(&mut self, n: usize) -> String {
        self.token(b"0123456789", n)
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[16..20], &h[20..32])
    }
}

struct Retailer {
    id: &'static str,
    currency: &'static str,
    gateway: &'static str,
    country: &'static str,
    cities: &'static [(&'static str, &'static str)],
    skus: &'static [(&'static str, u64)],
}

const RETAILERS: [Retailer; 4] = [
    Retailer {
        id: "nordic_outfitters",
        currency: "EUR",
        gateway: "stripe",
        country: "DE",
        cities: &[("Berlin", "10115"), ("Hamburg", "20095"), ("Munich", "80331"), ("Cologne", "50667")],
        skus: &[("NO-SOCK-WL-42", 1299), ("NO-JKT-RAIN-M", 8999), ("NO-BEANIE-GR", 1999), ("NO-BOOT-HK-44", 14999)],
    },
    Retailer {
        id: "austin_coffee",
        currency: "USD",
        gateway: "adyen",
        country: "US",
        cities: &[("Austin", "78701"), ("Dallas", "75201"), ("Houston", "77002"), ("El Paso", "79901")],
        skus: &[("AC-BEANS-1LB", 1699), ("AC-GRINDER-B", 8900), ("AC-MUG-12OZ", 1450), ("AC-FILTER-100", 599)],
    },
    Retailer {
        id: "london_books",
        currency: "GBP",
        gateway: "stripe",
        country: "GB",
        cities: &[("London", "EC1A 1BB"), ("Leeds", "LS1 4AP"), ("Bristol", "BS1 5TR"), ("York", "YO1 7HH")],
        skus: &[("LB-NOVEL-PB", 899), ("LB-ATLAS-HC", 3500), ("LB-COOK-HC", 2499)],
    },
    Retailer {
        id: "tokyo_stationery",
        currency: "JPY",
        gateway: "paypay",
        country: "JP",
        cities: &[("Tokyo", "100-0001"), ("Osaka", "530-0001"), ("Kyoto", "600-8001")],
        skus: &[("TS-PEN-GEL-05", 220), ("TS-NOTE-A5-DT", 480), ("TS-INK-BLUE", 1100), ("TS-CASE-CANVAS", 2600)],
    },
];

const CARRIERS: [&str; 4] = ["ups", "dhl", "fedex", "royalmail"];
const CHANNELS: [&str; 3] = ["web", "ios", "android"];

/// What an order carries from event to event.
struct Order {
    customer: String,
    cart: String,
    correlation: String,
    /// The previous event's command id: the next event's causation.
    causation: String,
    channel: &'static str,
    /// Microseconds since the epoch of the order's current moment.
    now_us: i64,
    lines: Vec<(&'static str, u64, u64)>,
}

impl RealisticOrders {
    /// Stream name of order `i` (the same names as the filler workload, so the same read
    /// benches find them).
    pub fn stream(i: usize) -> String {
        order_stream(i)
    }

    /// The events of order `i`, in lifecycle order: a cart with 1–4 items (sometimes one
    /// removed), checkout, a payment that may fail first, placement, shipment, delivery (that
    /// may fail once); some carts are abandoned, some orders cancelled or refunded.
    pub fn order_events(&self, i: usize) -> Vec<NewEvent> {
        let mut rng = Rng(SplitMix64::seed_from_u64(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let retailer = &RETAILERS[match rng.below(100) {
            0..40 => 0,
            40..70 => 1,
            70..90 => 2,
            _ => 3,
        }];
        let mut order = Order {
            customer: format!("cus_{}", rng.alnum(10)),
            cart: format!("cart_{}", rng.alnum(12)),
            correlation: rng.uuid(),
            causation: String::new(),
            channel: CHANNELS[rng.below(CHANNELS.len() as u64) as usize],
            now_us: 1_764_547_200_000_000 + (rng.below(90 * 86_400) as i64) * 1_000_000,
            lines: Vec::new(),
        };
        let mut events = Vec::with_capacity(12);
        let mut push = |rng: &mut Rng, order: &mut Order, kind: &str, data: String, system: bool| {
            order.now_us += 1_000_000 * (5 + rng.below(if system { 40_000 } else { 300 })) as i64;
            let meta = metadata(rng, order, system);
            events.push(NewEvent::new(kind, data.into_bytes()).with_metadata(meta.into_bytes()));
        };

        let c = &order.cart;
        let data = format!(
            r#"{{"cart_id":"{c}","customer_id":"{}","retailer_id":"{}","currency":"{}","channel":"{}","locale":"{}"}}"#,
            order.customer,
            retailer.id,
            retailer.currency,
            order.channel,
            ["en-US", "de-DE", "en-GB", "ja-JP"][(retailer.currency.as_bytes()[0] % 4) as usize]
        );
        push(&mut rng, &mut order, "CART_CREATED", data, false);
        let items = 1 + rng.below(5) as usize;
        for line in 0..items {
            let (sku, price) = *rng.pick(retailer.skus);
            let most = rng.percent(80);
            let quantity = 1 + rng.below(if most { 2 } else { 6 });
            order.lines.push((sku, price, quantity));
            let data = format!(
                r#"{{"cart_id":"{}","line_id":"ln_{}","sku":"{sku}","product_id":"p_{}","quantity":{quantity},"unit_price":{price},"currency":"{}"}}"#,
                order.cart,
                line + 1,
                rng.digits(6),
                retailer.currency
            );
            push(&mut rng, &mut order, "ITEM_ADDED", data, false);
        }
        if items > 1 && rng.percent(15) {
            let line = rng.below(items as u64) as usize;
            let (sku, price, quantity) = order.lines.remove(line);
            let data = format!(
                r#"{{"cart_id":"{}","line_id":"ln_{}","sku":"{sku}","quantity":{quantity},"unit_price":{price},"reason":"{}"}}"#,
                order.cart,
                line + 1,
                rng.pick(&["customer_removed", "changed_mind", "duplicate_line"])
            );
            push(&mut rng, &mut order, "ITEM_REMOVED", data, false);
        }
        // Abandoned carts stop here.
        if rng.percent(8) {
            return events;
        }
        let subtotal: u64 = order.lines.iter().map(|(_, p, q)| p * q).sum();
        let (city, postcode) = *rng.pick(retailer.cities);
        let shipping = [0, 495, 995][rng.below(3) as usize];
        let data = format!(
            r#"{{"cart_id":"{}","subtotal":{subtotal},"shipping_method":"{}","address":{{"line1":"{} {} St","city":"{city}","postcode":"{postcode}","country":"{}"}}}}"#,
            order.cart,
            rng.pick(&["standard", "express", "pickup"]),
            1 + rng.below(9999),
            rng.pick(&["Oak", "Main", "Elm", "High", "Station", "Park"]),
            retailer.country
        );
        push(&mut rng, &mut order, "CHECKOUT_STARTED", data, false);
        let total = subtotal + shipping + subtotal * 7 / 100;
        let mut attempts = 1;
        while rng.percent(10) && attempts < 3 {
            let data = format!(
                r#"{{"payment_id":"pay_{}","gateway":"{}","amount":{total},"currency":"{}","reason":"{}","attempt":{attempts}}}"#,
                rng.alnum(14),
                retailer.gateway,
                retailer.currency,
                rng.pick(&["card_declined", "insufficient_funds", "3ds_failed", "expired_card"])
            );
            push(&mut rng, &mut order, "PAYMENT_FAILED", data, true);
            attempts += 1;
        }
        if rng.percent(4) {
            let data = format!(
                r#"{{"order_ref":"{}","reason":"payment_abandoned","attempts":{attempts},"cancelled_by":"system","refund_due":0}}"#,
                order.cart
            );
            push(&mut rng, &mut order, "ORDER_CANCELLED", data, true);
            return events;
        }
        let data = format!(
            r#"{{"payment_id":"pay_{}","gateway":"{}","amount":{total},"currency":"{}","method":"{}","last4":"{}","attempt":{attempts}}}"#,
            rng.alnum(14),
            retailer.gateway,
            retailer.currency,
            rng.pick(&["card", "card", "wallet", "bank_transfer"]),
            rng.digits(4)
        );
        push(&mut rng, &mut order, "PAYMENT_CONFIRMED", data, true);
        let number = format!("{}-{}", &retailer.id[..2].to_uppercase(), rng.digits(8));
        let data = format!(
            r#"{{"order_number":"{number}","cart_id":"{}","items":{},"subtotal":{subtotal},"shipping":{shipping},"tax":{},"total":{total}}}"#,
            order.cart,
            order.lines.len(),
            subtotal * 7 / 100
        );
        push(&mut rng, &mut order, "ORDER_PLACED", data, false);
        let carrier = *rng.pick(&CARRIERS);
        let tracking = match carrier {
            "ups" => format!("1Z{}{}", rng.token(b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789", 6), rng.digits(10)),
            "royalmail" => format!("RM{}GB", rng.digits(9)),
            _ => rng.digits(12),
        };
        let data = format!(
            r#"{{"order_number":"{number}","carrier":"{carrier}","tracking_number":"{tracking}","warehouse":"wh-{}-{}","packages":{}}}"#,
            retailer.country.to_lowercase(),
            1 + rng.below(4),
            1 + rng.below(2)
        );
        push(&mut rng, &mut order, "ORDER_SHIPPED", data, true);
        if rng.percent(6) {
            let data = format!(
                r#"{{"order_number":"{number}","carrier":"{carrier}","tracking_number":"{tracking}","reason":"{}","next_attempt":true}}"#,
                rng.pick(&["recipient_absent", "address_not_found", "access_denied"])
            );
            push(&mut rng, &mut order, "DELIVERY_FAILED", data, true);
        }
        let data = format!(
            r#"{{"order_number":"{number}","carrier":"{carrier}","tracking_number":"{tracking}","signed_by":"{}","proof":"ph_{}"}}"#,
            rng.pick(&["front door", "recipient", "neighbour", "reception", "parcel locker"]),
            rng.alnum(10)
        );
        push(&mut rng, &mut order, "ORDER_DELIVERED", data, true);
        if rng.percent(5) {
            let (sku, price, quantity) = order.lines[0];
            let data = format!(
                r#"{{"order_number":"{number}","refund_id":"re_{}","sku":"{sku}","quantity":{quantity},"amount":{},"reason":"{}"}}"#,
                rng.alnum(12),
                price * quantity,
                rng.pick(&["damaged", "not_as_described", "late_delivery"])
            );
            push(&mut rng, &mut order, "REFUND_ISSUED", data, false);
        }
        events
    }

    /// Orders `0..orders` interleaved `interleave` at a time, as the peers' load ran them: each
    /// order of a group takes one step in turn.
    pub fn events(&self, orders: usize, interleave: usize) -> Vec<WorkloadEvent> {
        interleaved(orders, interleave, |i| (Self::stream(i), self.order_events(i)))
    }
}

/// The metadata of one event (design.md: actor, actor id, ip, user agent, correlation and
/// causation ids, tenant), about 110 bytes: a customer's events carry the channel and address,
/// the system's the service that acted.
fn metadata(rng: &mut Rng, order: &mut Order, system: bool) -> String {
    let command = rng.hex(12);
    let causation = if order.causation.is_empty() { "null".to_string() } else { format!("\"{}\"", order.causation) };
    let corr = &order.correlation[..18];
    let meta = if system {
        format!(
            r#"{{"actor":"system","source":"{}","correlation_id":"{corr}","causation_id":{causation}}}"#,
            rng.pick(&["payments-svc", "fulfilment-svc", "carrier-webhook"]),
        )
    } else {
        format!(
            r#"{{"actor":"customer","actor_id":"{}","correlation_id":"{corr}","causation_id":{causation}}}"#,
            order.customer
        )
    };
    order.causation = command;
    meta
}

/// Appends `events` to `store` as atomic multi-stream batches of `per_batch` events, one part
/// per event (the shape `bench append --multi-stream` commits).
pub fn append_in_batches(store: &logbook::Store, events: &[WorkloadEvent], per_batch: usize) -> logbook::Result<()> {
    for chunk in events.chunks(per_batch.max(1)) {
        let parts = chunk
            .iter()
            .map(|e| logbook::AppendPart::new(e.stream.clone(), logbook::ExpectedVersion::Any, vec![e.event.clone()]))
            .collect();
        store.append_batch(parts)?;
    }
    Ok(())
}

/// One event of the workload: which order stream it belongs to and the event.
#[derive(Debug, Clone)]
pub struct WorkloadEvent {
    pub stream: String,
    pub event: NewEvent,
}

/// Stream name of order `i` (both workloads, and the peers' harness, name orders alike).
pub fn order_stream(i: usize) -> String {
    format!("order-{i:08x}-{:04x}", (i * 7919) % 65_536)
}

/// The events of orders `0..orders`, `interleave` orders at a time, each order of a group taking
/// one step in turn (as the peers' load ran them); `order(i)` gives order `i`'s stream and events.
pub fn interleaved(
    orders: usize,
    interleave: usize,
    order: impl Fn(usize) -> (String, Vec<NewEvent>),
) -> Vec<WorkloadEvent> {
    let mut out = Vec::new();
    for group_start in (0..orders).step_by(interleave.max(1)) {
        let group: Vec<(String, Vec<NewEvent>)> =
            (group_start..(group_start + interleave).min(orders)).map(&order).collect();
        let longest = group.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
        for step in 0..longest {
            for (stream, events) in &group {
                if let Some(event) = events.get(step) {
                    out.push(WorkloadEvent { stream: stream.clone(), event: event.clone() });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape design.md gives: about 8.6 events per order, payloads of 107–173 bytes,
    /// metadata about 110, JSON throughout, varied, deterministic per seed.
    #[test]
    fn realistic_orders_have_the_design_shape() {
        let generator = RealisticOrders::default();
        let events = generator.events(2_000, 64);
        let per_order = events.len() as f64 / 2_000.0;
        assert!((8.0..=9.5).contains(&per_order), "{per_order} events per order");
        let (mut data, mut meta) = (0usize, 0usize);
        for e in &events {
            let len = e.event.data.len();
            assert!(PAYLOAD_BYTES.contains(&len), "{len} B payload: {}", String::from_utf8_lossy(&e.event.data));
            serde_json::from_slice::<serde_json::Value>(&e.event.data).unwrap();
            serde_json::from_slice::<serde_json::Value>(&e.event.metadata).unwrap();
            data += len;
            meta += e.event.metadata.len();
        }
        let (data, meta) = (data as f64 / events.len() as f64, meta as f64 / events.len() as f64);
        assert!((125.0..=160.0).contains(&data), "mean payload {data} B");
        assert!((95.0..=125.0).contains(&meta), "mean metadata {meta} B");
        // Varied, not filler: nearly every payload is distinct.
        let distinct: std::collections::HashSet<_> = events.iter().map(|e| &e.event.data).collect();
        assert!(distinct.len() * 100 >= events.len() * 95, "{} distinct of {}", distinct.len(), events.len());
        // Every lifecycle step appears.
        for kind in [
            "CART_CREATED",
            "ITEM_ADDED",
            "CHECKOUT_STARTED",
            "PAYMENT_CONFIRMED",
            "ORDER_PLACED",
            "ORDER_SHIPPED",
            "ORDER_DELIVERED",
            "PAYMENT_FAILED",
            "REFUND_ISSUED",
        ] {
            assert!(events.iter().any(|e| e.event.event_type == kind), "no {kind}");
        }
        // Deterministic per seed, and another seed gives other events.
        assert_eq!(generator.order_events(7), RealisticOrders::default().order_events(7));
        assert_ne!(generator.order_events(7), RealisticOrders { seed: 1 }.order_events(7));
        // Interleaved: the first 64 events belong to 64 different orders.
        let first: std::collections::HashSet<_> = events[..64].iter().map(|e| e.stream.clone()).collect();
        assert_eq!(first.len(), 64);
    }
}
