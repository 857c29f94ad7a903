//! A bounded cache of segment blocks for random reads (`read_stream`, idempotency lookups):
//! hot events are served without a system call, as memory-mapped reads were, without the map.
//! (redb did the same when it left mmap.) `$all` scans read their own chunks and do not pass
//! through it, so a replay does not push out what point reads keep using.
//!
//! Two generations approximate LRU in O(1): new and re-used blocks go into `hot`; when `hot`
//! holds half the budget it becomes `cold` (the old `cold` is dropped); a hit in `cold` moves
//! the block back to `hot`. So at most [`BlockCache::capacity`] bytes (+ one block) are held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

/// Bytes per cached block; blocks are aligned to it in the file.
pub const BLOCK_BYTES: u64 = 4096;

/// (reader id, block number).
type Key = (u64, u64);

/// Keys are two small integers we made ourselves, never chosen by a client: a multiply-mix
/// hash (as FxHash) instead of SipHash, which was a tenth of a cached read.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Map = HashMap<Key, Bytes, std::hash::BuildHasherDefault<KeyHasher>>;

/// The cache, shared by every segment reader of a store.
#[derive(Debug)]
pub struct BlockCache {
    capacity: usize,
    inner: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    hot: Map,
    cold: Map,
    hot_bytes: usize,
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes; 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        BlockCache { capacity, inner: Mutex::default(), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[cfg(any(test, feature = "testing"))]
    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// The cached block, if any.
    pub fn get(&self, reader: u64, block: u64) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        let mut gens = self.inner.lock();
        let found = match gens.hot.get(&(reader, block)) {
            Some(bytes) => Some(bytes.clone()),
            None => gens.cold.remove(&(reader, block)).inspect(|bytes| {
                gens.insert_hot((reader, block), bytes.clone(), self.capacity);
            }),
        };
        drop(gens);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Calls `f` with the cached block, under the cache's lock, if it is cached. Copying what
    /// is needed out of it here, rather than sharing the block, keeps a hit to one hash lookup:
    /// a shared buffer's reference count is one more cache miss per event.
    pub fn with<R>(&self, reader: u64, block: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.capacity == 0 {
            return None;
        }
        let mut gens = self.inner.lock();
        let result = match gens.hot.get(&(reader, block)) {
            Some(bytes) => Some(f(bytes)),
            None => gens.cold.remove(&(reader, block)).map(|bytes| {
                let result = f(&bytes);
                gens.insert_hot((reader, block), bytes, self.capacity);
                result
            }),
        };
        drop(gens);
        let counter = if result.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Caches a block (replacing a shorter copy of it).
    pub fn insert(&self, reader: u64, block: u64, bytes: Bytes) {
        if self.capacity == 0 || bytes.len() as u64 > BLOCK_BYTES {
            return;
        }
        let mut gens = self.inner.lock();
        gens.cold.remove(&(reader, block));
        gens.insert_hot((reader, block), bytes, self.capacity);
    }
}

impl Generations {
    fn insert_hot(&mut self, key: Key, bytes: Bytes, capacity: usize) {
        self.hot_bytes += bytes.len();
        if let Some(old) = self.hot.insert(key, bytes) {
            self.hot_bytes -= old.len();
        }
        if self.hot_bytes > capacity / 2 {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
    }
}

/// A process-wide unique id for each segment reader (a compaction's new file gets a new one,
/// so its blocks never answer for the old file's).
pub fn next_reader_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_is_used() {
        let cache = BlockCache::new(64 * 1024);
        let block = Bytes::from(vec![7u8; BLOCK_BYTES as usize]);
        for i in 0..1000 {
            cache.insert(1, i, block.clone());
            // Block 0 is read all the time: it stays.
            assert!(cache.get(1, 0).is_some(), "hot block evicted at {i}");
            let gens = cache.inner.lock();
            let held: usize = gens.hot.values().chain(gens.cold.values()).map(Bytes::len).sum();
            assert!(held <= 64 * 1024 + BLOCK_BYTES as usize, "{held} bytes held");
        }
        assert!(cache.get(1, 500).is_none(), "old blocks go");
        assert!(cache.get(2, 999).is_none(), "other readers' blocks are other blocks");
        let off = BlockCache::new(0);
        off.insert(1, 0, block);
        assert!(off.get(1, 0).is_none());
    }
}
