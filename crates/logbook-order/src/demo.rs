//! Realistic order traffic for a newcomer to look at (`logbook demo`): several retailers,
//! abandoned carts, payment failures, out-of-stock partial cancellations, delivery failures,
//! cancellations and refunds, interleaved like real traffic, all through the command path
//! ([`crate::aggregate::Repository`]), so every order obeys the state machine.
//!
//! Deterministic from the seed: the same seed gives the same orders, commands, event types,
//! data and metadata (order ids, customers, correlation and causation ids included). Event ids
//! and timestamps are not from the seed: the repository draws event ids and the store stamps
//! each event with the wall clock when it is written.

use std::collections::BTreeMap;

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde::Serialize;
use uuid::Uuid;

use crate::{repository, stream_name, Money, OrderCommand, OrderMetadata, OrderResult, OrderStatus};
use logbook::Error;
use logbook::Store;
use logbook_es::aggregate::AggregateError;

/// A demo retailer and its catalogue.
#[derive(Debug, Clone, Copy)]
pub struct RetailerSpec {
    pub id: &'static str,
    pub currency: &'static str,
    pub gateway: &'static str,
    /// Relative share of the traffic.
    pub weight: u64,
    /// (product id, price in minor units).
    pub products: &'static [(&'static str, u64)],
}

/// The demo's retailers (product ids are unique across them).
pub const RETAILERS: [RetailerSpec; 4] = [
    RetailerSpec {
        id: "retailer_nordic_outfitters",
        currency: "EUR",
        gateway: "stripe",
        weight: 40,
        products: &[("no-wool-socks", 1299), ("no-rain-jacket", 8999), ("no-beanie", 1999), ("no-hiking-boots", 14999)],
    },
    RetailerSpec {
        id: "retailer_austin_coffee",
        currency: "USD",
        gateway: "adyen",
        weight: 30,
        products: &[("ac-beans-1lb", 1699), ("ac-grinder", 8900), ("ac-mug", 1450), ("ac-filters", 599)],
    },
    RetailerSpec {
        id: "retailer_london_books",
        currency: "GBP",
        gateway: "stripe",
        weight: 20,
        products: &[("lb-novel", 899), ("lb-atlas", 3500), ("lb-cookbook", 2499)],
    },
    RetailerSpec {
        id: "retailer_tokyo_stationery",
        currency: "JPY",
        gateway: "paypay",
        weight: 10,
        products: &[("ts-fountain-pen", 3500), ("ts-notebook-a5", 800), ("ts-ink-blue", 1200)],
    },
];

/// Orders in flight at once (their commands interleave).
pub const CONCURRENT_ORDERS: usize = 32;

/// The demo's draws, from `rand_xoshiro`'s SplitMix64 (small, fast, the same on every
/// platform; the algorithm this module hand-wrote before, so a seed gives the orders it always
/// gave: `splitmix64_is_the_old_generator` pins that).
#[derive(Debug, Clone)]
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    /// One of `items`. Callers pass constant arrays or an order's lines (never empty: every
    /// planned order has at least one line), so the index is always in bounds.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// Who sends a command: decides the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Customer,
    System,
    Admin,
    Agent,
    Courier,
}

/// One order's remaining commands and its fixed context.
struct Plan {
    order_id: String,
    retailer: &'static RetailerSpec,
    customer_id: String,
    ip: String,
    user_agent: &'static str,
    correlation_id: String,
    steps: std::collections::VecDeque<(OrderCommand, Who)>,
}

const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile",
    "ShopApp/4.2 (iOS 17.5)",
];

fn money(retailer: &RetailerSpec, amount: u64) -> Money {
    Money::new(amount, retailer.currency)
}

/// Decides an order's whole path up front (the state machine then checks every step).
fn plan(rng: &mut Rng) -> Plan {
    let total_weight: u64 = RETAILERS.iter().map(|r| r.weight).sum();
    let mut ticket = rng.below(total_weight);
    let retailer = RETAILERS
        .iter()
        .find(|r| {
            if ticket < r.weight {
                return true;
            }
            ticket -= r.weight;
            false
        })
        .unwrap_or(&RETAILERS[0]);
    let mut p = Plan {
        order_id: rng.uuid().to_string(),
        retailer,
        customer_id: format!("cust_{:05}", rng.below(5000)),
        ip: format!("203.0.{}.{}", rng.below(256), 1 + rng.below(254)),
        user_agent: USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize],
        correlation_id: rng.uuid().to_string(),
        steps: Default::default(),
    };
    p.steps.push_back((
        OrderCommand::CreateCart {
            retailer_id: retailer.id.into(),
            customer_id: p.customer_id.clone(),
            currency: retailer.currency.into(),
        },
        Who::Customer,
    ));
    plan_cart(rng, &mut p);
    p
}

fn plan_cart(rng: &mut Rng, p: &mut Plan) {
    let r = p.retailer;
    let mut order: Vec<usize> = (0..r.products.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let lines = 1 + rng.below(order.len().min(4) as u64) as usize;
    let mut chosen = Vec::new();
    for &i in &order[..lines] {
        let (product, price) = r.products[i];
        let quantity = 1 + rng.below(3) as u32;
        chosen.push((product, price, quantity));
        p.steps.push_back((
            OrderCommand::AddItem { product_id: product.into(), quantity, unit_price: money(r, price) },
            Who::Customer,
        ));
    }
    if lines < order.len() && rng.percent(10) {
        // Added, then thought better of it.
        let (product, price) = r.products[order[lines]];
        p.steps.push_back((
            OrderCommand::AddItem { product_id: product.into(), quantity: 1, unit_price: money(r, price) },
            Who::Customer,
        ));
        p.steps.push_back((OrderCommand::RemoveItem { product_id: product.into(), quantity: 1 }, Who::Customer));
    }
    if rng.percent(20) {
        if rng.percent(15) {
            p.steps.push_back((OrderCommand::Cancel { reason: "cart abandoned".into() }, Who::System));
        }
        return;
    }
    p.steps.push_back((OrderCommand::StartCheckout, Who::Customer));
    if rng.percent(6) {
        return; // left at checkout
    }
    plan_payment(rng, p, chosen);
}

fn plan_payment(rng: &mut Rng, p: &mut Plan, lines: Vec<(&'static str, u64, u32)>) {
    let r = p.retailer;
    let total: u64 = lines.iter().map(|(_, price, qty)| price * u64::from(*qty)).sum();
    if rng.percent(8) {
        let reason = *rng.pick(&["card_declined", "insufficient_funds", "3ds_timeout"]);
        p.steps.push_back((OrderCommand::FailPayment { reason: reason.into() }, Who::System));
        if rng.percent(50) {
            p.steps.push_back((OrderCommand::Cancel { reason: "payment not completed".into() }, Who::System));
        }
        return;
    }
    p.steps.push_back((
        OrderCommand::ConfirmPayment {
            transaction_id: format!("pi_{:024x}", u128::from(rng.next_u64()) << 32 | u128::from(rng.next_u64() >> 32)),
            gateway: r.gateway.into(),
            amount: money(r, total),
        },
        Who::System,
    ));
    p.steps.push_back((OrderCommand::PlaceOrder, Who::System));
    let mut balance = total;
    if lines.len() >= 2 && rng.percent(10) {
        let (product, price, qty) = *rng.pick(&lines);
        p.steps.push_back((
            OrderCommand::CancelItem { product_id: product.into(), reason: "out of stock".into() },
            Who::System,
        ));
        p.steps.push_back((OrderCommand::IssueRefund { amount: money(r, price * u64::from(qty)) }, Who::System));
        balance -= price * u64::from(qty);
    }
    if rng.percent(3) {
        p.steps.push_back((OrderCommand::Cancel { reason: "customer request".into() }, Who::Agent));
        p.steps.push_back((OrderCommand::IssueRefund { amount: money(r, balance) }, Who::Agent));
        return;
    }
    plan_delivery(rng, p, balance, &lines);
}

fn plan_delivery(rng: &mut Rng, p: &mut Plan, balance: u64, lines: &[(&'static str, u64, u32)]) {
    let r = p.retailer;
    p.steps.push_back((OrderCommand::StartProcessing, Who::System));
    let tracking = format!("BD{:07}IN", rng.below(10_000_000));
    p.steps.push_back((OrderCommand::Ship { tracking }, Who::Admin));
    if rng.percent(5) {
        let reason = *rng.pick(&["address not found", "recipient unavailable"]);
        p.steps.push_back((OrderCommand::FailDelivery { reason: reason.into() }, Who::Courier));
        if rng.percent(60) {
            p.steps.push_back((OrderCommand::Cancel { reason: "returned to sender".into() }, Who::Admin));
            p.steps.push_back((OrderCommand::IssueRefund { amount: money(r, balance) }, Who::Admin));
        }
        return;
    }
    p.steps.push_back((OrderCommand::Deliver, Who::Courier));
    if rng.percent(4) {
        // A return of one unit of some line (the refund never exceeds the balance: a line of
        // an order that was never partially cancelled is fully paid).
        let (_, price, _) = *rng.pick(lines);
        if price <= balance {
            p.steps.push_back((OrderCommand::IssueRefund { amount: money(r, price) }, Who::Agent));
        }
    }
}

fn metadata(p: &Plan, who: Who, command_id: &str) -> OrderMetadata {
    let retailer = p.retailer.id;
    let meta = match who {
        Who::Customer => OrderMetadata::customer(retailer, &p.customer_id).with_ip(&p.ip).with_user_agent(p.user_agent),
        Who::System => OrderMetadata::system(retailer).with_customer(&p.customer_id),
        Who::Admin => OrderMetadata::admin(retailer, retailer).with_customer(&p.customer_id),
        Who::Agent => OrderMetadata::agent(retailer, "agent_007").with_customer(&p.customer_id),
        Who::Courier => {
            OrderMetadata::system(retailer).with_customer(&p.customer_id).with_user_agent("courier webhook")
        }
    };
    meta.with_correlation(&p.correlation_id).with_causation(command_id)
}

/// What [`generate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    pub seed: u64,
    pub orders: usize,
    pub commands: usize,
    pub events: u64,
    /// Final status -> orders.
    pub by_status: BTreeMap<String, usize>,
    /// Retailer -> orders.
    pub by_retailer: BTreeMap<String, usize>,
    /// A delivered order without incident (for showing a timeline).
    pub happy_example: Option<String>,
    /// An order that went wrong somewhere, for a second timeline: the first one with an
    /// out-of-stock partial cancellation if any, else the first payment or delivery failure.
    pub troubled_example: Option<String>,
}

/// Generates `orders` orders into `store` through the order repository, deterministically from
/// `seed`. Fails if an order of this seed already exists (run it again with another seed),
/// or if the store fails; a rejected command would be a bug and is returned as an error.
pub fn generate(store: &Store, orders: usize, seed: u64) -> OrderResult<DemoSummary> {
    let repo = repository(store);
    let mut rng = Rng::new(seed);
    let mut summary = DemoSummary { seed, orders, ..DemoSummary::default() };
    let mut pool: Vec<Plan> = Vec::with_capacity(CONCURRENT_ORDERS);
    let mut created = 0usize;
    // Order id -> how much its story shows (2: out-of-stock partial cancellation and refund).
    let mut troubled: BTreeMap<String, u8> = BTreeMap::new();
    let mut troubled_rank = 0u8;
    while created < orders || !pool.is_empty() {
        let start_new = created < orders && (pool.is_empty() || (pool.len() < CONCURRENT_ORDERS && rng.percent(35)));
        let index = if start_new {
            let plan = plan(&mut rng);
            let stream = stream_name(&plan.order_id);
            if store.stream_version(&stream) > 0 {
                return Err(AggregateError::Store(Error::InvalidInput(format!(
                    "{stream} already exists: the demo with seed {seed} was already generated into this store; use another seed"
                ))));
            }
            *summary.by_retailer.entry(plan.retailer.id.to_string()).or_insert(0) += 1;
            created += 1;
            pool.push(plan);
            pool.len() - 1
        } else {
            rng.below(pool.len() as u64) as usize
        };
        let command_id = rng.uuid().to_string();
        let plan = &mut pool[index];
        let Some((command, who)) = plan.steps.pop_front() else {
            pool.swap_remove(index);
            continue;
        };
        let rank = match command {
            OrderCommand::CancelItem { .. } => 2,
            OrderCommand::FailPayment { .. } | OrderCommand::FailDelivery { .. } => 1,
            _ => 0,
        };
        if rank > 0 {
            let entry = troubled.entry(plan.order_id.clone()).or_insert(0);
            *entry = (*entry).max(rank);
        }
        let executed = repo.execute(&stream_name(&plan.order_id), &command, &metadata(plan, who, &command_id))?;
        summary.commands += 1;
        summary.events += executed.events.len() as u64;
        if plan.steps.is_empty() {
            let status = executed.state.status;
            *summary.by_status.entry(status.to_string()).or_insert(0) += 1;
            let rank = troubled.remove(&plan.order_id).unwrap_or(0);
            if status == OrderStatus::Delivered && rank == 0 && executed.state.refunded == 0 {
                summary.happy_example.get_or_insert_with(|| plan.order_id.clone());
            }
            if rank > troubled_rank {
                summary.troubled_example = Some(plan.order_id.clone());
                troubled_rank = rank;
            }
            pool.swap_remove(index);
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    /// The SplitMix64 this module hand-wrote until it used `rand_xoshiro`'s: a demo seed must
    /// keep giving the same orders.
    fn old_splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn splitmix64_is_the_old_generator() {
        // The first outputs for seed 0 (the reference splitmix64.c's) and the default seed.
        let mut rng = Rng::new(0);
        assert_eq!([rng.next_u64(), rng.next_u64()], [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4]);
        let mut rng = Rng::new(2026);
        assert_eq!([rng.next_u64(), rng.next_u64()], [0xdb9c_5598_9194_8d23, 0x78bc_927d_ed35_455d]);
        for seed in [0, 1, 7, 2026, 424_242, u64::MAX] {
            let (mut rng, mut old) = (Rng::new(seed), seed);
            for i in 0..1000 {
                assert_eq!(rng.next_u64(), old_splitmix64(&mut old), "seed {seed}, draw {i}");
            }
        }
    }
}
