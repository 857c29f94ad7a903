//! A bounded cache of segment blocks for random reads (`read_stream`, idempotency lookups):
//! hot events are served without a system call, as memory-mapped reads were, without the map.
//! (redb did the same when it left mmap.) `$all` scans read their own chunks and do not pass
//! through it, so a replay does not push out what point reads keep using.
//!
//! The cache is a fixed table of sets, each holding up to [`WAYS`] blocks under its own lock
//! (set-associative, as a CPU cache): a block's set is a multiply of its (reader, block) key,
//! so a lookup is one multiply, one uncontended lock and a compare of four tags in one cache
//! line, with no global lock and no hash-map probing. Within a set the victim is chosen by
//! CLOCK (a block read since the hand last passed it gets a second chance).
//!
//! Memory: at most `capacity / (BLOCK_BYTES * WAYS)` sets, each holding at most [`WAYS`]
//! blocks of at most [`BLOCK_BYTES`], so the blocks never exceed `capacity` bytes; the table of
//! sets itself is allocated at open, ~128 bytes per set (2 MiB for the default 256 MiB).

use parking_lot::Mutex;

/// Bytes per cached block; blocks are aligned to it in the file.
pub const BLOCK_BYTES: u64 = 4096;

/// Blocks per set.
pub const WAYS: usize = 4;

/// Block numbers below this fit in a tag (a segment never exceeds 4 GiB, 2^20 blocks).
const BLOCK_BITS: u32 = 20;
/// Reader ids below this fit in a tag.
const MAX_READER_ID: u64 = 1 << (64 - BLOCK_BITS - 1);

/// The cache, shared by every segment reader of a store.
#[derive(Debug)]
pub struct BlockCache {
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    capacity: usize,
    sets: Box<[Mutex<Set>]>,
}

/// One set: up to [`WAYS`] blocks, tag 0 meaning an empty way.
#[derive(Debug, Default)]
struct Set {
    /// `reader << BLOCK_BITS | block`; reader ids start at 1, so 0 is never a block's tag.
    tags: [u64; WAYS],
    blocks: [Option<Box<[u8]>>; WAYS],
    /// Bit i: way i was read since the hand last passed it.
    referenced: u8,
    /// Next way the CLOCK hand looks at.
    hand: u8,
    hits: u32,
    misses: u32,
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes of blocks; below `BLOCK_BYTES * WAYS` it caches
    /// nothing.
    pub fn new(capacity: usize) -> Self {
        let sets = capacity / (BLOCK_BYTES as usize * WAYS);
        BlockCache { capacity, sets: (0..sets).map(|_| Mutex::new(Set::default())).collect() }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[cfg(any(test, feature = "testing"))]
    /// (hits, misses) so far (counted per set, summed here).
    pub fn stats(&self) -> (u64, u64) {
        self.sets.iter().fold((0, 0), |(h, m), set| {
            let set = set.lock();
            (h + u64::from(set.hits), m + u64::from(set.misses))
        })
    }

    /// The set and tag of a block, or `None` when the cache is off or the key does not fit.
    fn slot(&self, reader: u64, block: u64) -> Option<(&Mutex<Set>, u64)> {
        if self.sets.is_empty() || block >= 1 << BLOCK_BITS || reader == 0 || reader >= MAX_READER_ID {
            return None;
        }
        let tag = reader << BLOCK_BITS | block;
        // Keys are integers we made ourselves, never chosen by a client: a multiply mixes them
        // well enough, and the high bits of the product pick the set (no power of two needed).
        let mixed = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let index = ((u128::from(mixed) * self.sets.len() as u128) >> 64) as usize;
        Some((&self.sets[index], tag))
    }

    /// Calls `f` with the cached block, under its set's lock, if it is cached. Copying what is
    /// needed out of it here, rather than sharing the block, keeps a hit free of reference
    /// counts (each would be one more cache miss per event).
    pub fn with<R>(&self, reader: u64, block: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (set, tag) = self.slot(reader, block)?;
        let mut set = set.lock();
        match set.tags.iter().position(|&t| t == tag) {
            Some(way) => {
                set.referenced |= 1 << way;
                set.hits = set.hits.wrapping_add(1);
                set.blocks[way].as_deref().map(f)
            }
            None => {
                set.misses = set.misses.wrapping_add(1);
                None
            }
        }
    }

    /// Asks the CPU to start loading bytes `from..from + len` of the cached block (clamped to
    /// it), if it is cached, and returns at once. A stream read does this for all its frames
    /// before copying any: their cache misses then overlap instead of following one another.
    /// Counts neither a hit nor a miss.
    pub fn prefetch(&self, reader: u64, block: u64, from: usize, len: usize) {
        let Some((set, tag)) = self.slot(reader, block) else { return };
        let set = set.lock();
        if let Some(bytes) = set.tags.iter().position(|&t| t == tag).and_then(|way| set.blocks[way].as_deref()) {
            let end = from.saturating_add(len).min(bytes.len());
            let mut at = from;
            while at < end {
                prefetch_line(&bytes[at]);
                at += CACHE_LINE;
            }
        }
    }

    /// Caches a copy of a block (replacing a shorter copy of it). Longer blocks are ignored.
    pub fn insert(&self, reader: u64, block: u64, bytes: &[u8]) {
        if bytes.len() as u64 > BLOCK_BYTES {
            return;
        }
        let Some((set, tag)) = self.slot(reader, block) else { return };
        let copy: Box<[u8]> = bytes.into();
        let mut set = set.lock();
        let way = match set.tags.iter().position(|&t| t == tag) {
            Some(way) => way,
            None => match set.tags.iter().position(|&t| t == 0) {
                Some(way) => way,
                None => set.victim(),
            },
        };
        set.tags[way] = tag;
        // The old block is freed when the lock is released (below, with `old`).
        let old = set.blocks[way].replace(copy);
        set.referenced &= !(1 << way);
        drop(set);
        drop(old);
    }
}

impl Set {
    /// CLOCK: the first way from the hand not read since the hand last passed it.
    fn victim(&mut self) -> usize {
        loop {
            let way = usize::from(self.hand) % WAYS;
            self.hand = ((way + 1) % WAYS) as u8;
            if self.referenced & (1 << way) == 0 {
                return way;
            }
            self.referenced &= !(1 << way);
        }
    }
}

/// Bytes per CPU cache line (the step of [`BlockCache::prefetch`]).
const CACHE_LINE: usize = 64;

/// Hints the CPU to bring the cache line holding `byte` closer; no effect on what is read.
#[inline(always)]
fn prefetch_line(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is unsafe only because it is a `#[target_feature(enable = "sse")]`
    // function; SSE is part of every x86_64 target (the baseline). A prefetch is a hint: it
    // never faults, never changes memory and never makes a later read return other bytes, and
    // the pointer here comes from a live reference anyway.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((byte as *const u8).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

/// A process-wide unique id for each segment reader (a compaction's new file gets a new one,
/// so its blocks never answer for the old file's).
pub fn next_reader_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(cache: &BlockCache) -> usize {
        cache.sets.iter().map(|s| s.lock().blocks.iter().flatten().map(|b| b.len()).sum::<usize>()).sum()
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_is_used() {
        let cache = BlockCache::new(64 * 1024);
        let block = vec![7u8; BLOCK_BYTES as usize];
        for i in 0..1000 {
            cache.insert(1, i, &block);
            // Block 0 is read all the time: it stays.
            assert!(cache.with(1, 0, |b| b.len()).is_some(), "hot block evicted at {i}");
            assert!(held(&cache) <= 64 * 1024, "{} bytes held", held(&cache));
        }
        assert!(cache.with(1, 500, |_| ()).is_none(), "old blocks go");
        assert!(cache.with(2, 999, |_| ()).is_none(), "other readers' blocks are other blocks");
        assert_eq!(cache.with(1, 999, |b| b.to_vec()), Some(block.clone()));
        let (hits, misses) = cache.stats();
        assert!(hits >= 1000 && misses >= 2, "{hits} hits, {misses} misses");
        let off = BlockCache::new(0);
        off.insert(1, 0, &block);
        assert!(off.with(1, 0, |_| ()).is_none());
    }

    #[test]
    fn a_longer_copy_replaces_a_shorter_one_and_keys_out_of_range_are_not_cached() {
        let cache = BlockCache::new(1 << 20);
        cache.insert(3, 5, &[1, 2, 3]);
        cache.insert(3, 5, &[1, 2, 3, 4]);
        assert_eq!(cache.with(3, 5, |b| b.to_vec()), Some(vec![1, 2, 3, 4]));
        cache.insert(3, 1 << BLOCK_BITS, &[1]);
        assert!(cache.with(3, 1 << BLOCK_BITS, |_| ()).is_none());
        cache.insert(3, 6, &vec![0u8; BLOCK_BYTES as usize + 1]);
        assert!(cache.with(3, 6, |_| ()).is_none());
        // A working set of half the capacity stays almost whole (few conflicts in a set).
        let cache = BlockCache::new(16 << 20);
        let block = vec![1u8; BLOCK_BYTES as usize];
        for b in 0..2048 {
            cache.insert(9, b, &block);
        }
        let kept = (0..2048).filter(|&b| cache.with(9, b, |_| ()).is_some()).count();
        assert!(kept > 2000, "{kept} of 2048 kept");
    }
}
