//! The compressed form of a sealed segment: layout constants, encode, decode. Pure (no I/O).
//!
//! A compressed segment file holds the same logical segment — the 64-byte header followed by
//! the frames, exactly as a plain sealed segment — cut into logical blocks of `B` bytes, each
//! compressed on its own, so that any byte of it is read by decompressing one block: the index
//! keeps its (logical) frame offsets, and readers map an offset to its block through the table.
//!
//! ```text
//! 0..64        segment header (crate::segment), flag bit 2 = COMPRESSED, and in its reserved
//!              bytes: 36..40 u32 the source's header checksum, 56..60 u32 the source's length
//!              (the plain sealed segment this file replaced)
//! 64..96       block header
//!   64..72     [u8;8] magic "LGBKZBL\0"
//!   72..76     u32    codec: 1 = LZ4 block format (no frame, no dictionary)
//!   76..80     u32    log2 of B, the logical block size (12..=20: 4 KiB ..= 1 MiB)
//!   80..88     u64    L, the logical length (64 <= L <= 4 GiB)
//!   88..92     u32    N, the number of blocks = ceil(L / B)
//!   92..96     u32    crc32(bytes 64..92, then the table) XOR CRC_MASK
//! 96..96+8N    block table, per block: u32 compressed length (1 ..= LZ4's bound for B),
//!              u32 crc32(the compressed bytes) XOR CRC_MASK
//! then         the compressed blocks, back to back; the file ends exactly after the last
//! ```
//!
//! Block `i` decompresses to logical bytes `i·B .. min((i+1)·B, L)`; the logical bytes 0..64
//! are the header above. Every length is bounded before anything is allocated: `L` by the
//! largest segment, `N` by `L`, each compressed length by LZ4's bound for `B`, the table and the
//! blocks by the file's length (which must be exact), each block's output by its logical size.

use crate::record::CRC_MASK;
use crate::segment::{MAX_SEGMENT_FILE_BYTES, SEGMENT_HEADER_BYTES};
use crate::le::{u32_at, u64_at};

/// Where the block header starts: right after the segment header.
pub const BLOCK_HEADER_OFFSET: usize = SEGMENT_HEADER_BYTES;
/// Magic of the block header.
pub const BLOCK_MAGIC: [u8; 8] = *b"LGBKZBL\0";
pub const MAGIC_AT: usize = BLOCK_HEADER_OFFSET;
pub const CODEC_AT: usize = BLOCK_HEADER_OFFSET + 8;
pub const SHIFT_AT: usize = BLOCK_HEADER_OFFSET + 12;
pub const LOGICAL_LEN_AT: usize = BLOCK_HEADER_OFFSET + 16;
pub const BLOCKS_AT: usize = BLOCK_HEADER_OFFSET + 24;
pub const TABLE_CRC_AT: usize = BLOCK_HEADER_OFFSET + 28;
/// Bytes of the block header.
pub const BLOCK_HEADER_BYTES: usize = 32;
/// Where the block table starts.
pub const TABLE_OFFSET: usize = BLOCK_HEADER_OFFSET + BLOCK_HEADER_BYTES;
/// Bytes of one table entry.
pub const TABLE_ENTRY_BYTES: usize = 8;
/// Segment header bytes holding the source's header checksum and length.
pub const SOURCE_CRC_AT: usize = 36;
pub const SOURCE_LEN_AT: usize = 56;

/// Codec 1: LZ4 block format.
pub const CODEC_LZ4: u32 = 1;
/// Smallest and largest log2 of the logical block size.
pub const MIN_BLOCK_SHIFT: u32 = 12;
pub const MAX_BLOCK_SHIFT: u32 = 20;
/// The block size this build writes: 64 KiB (on the order workload LZ4 keeps 0.34 of the
/// frames' bytes at 64 KiB, 0.44 at 16 KiB; a random read decompresses one block).
pub const DEFAULT_BLOCK_SHIFT: u32 = 16;
/// Most blocks a file may have (a 4 GiB segment in 4 KiB blocks): the table is at most 8 MiB.
pub const MAX_BLOCKS: u64 = MAX_SEGMENT_FILE_BYTES >> MIN_BLOCK_SHIFT;

const _: () = assert!(BLOCK_HEADER_OFFSET + BLOCK_HEADER_BYTES == TABLE_OFFSET);
const _: () = assert!(TABLE_CRC_AT + 4 == TABLE_OFFSET && BLOCKS_AT + 4 == TABLE_CRC_AT);
const _: () = assert!(MAGIC_AT + 8 == CODEC_AT && CODEC_AT + 4 == SHIFT_AT && SHIFT_AT + 4 == LOGICAL_LEN_AT);
const _: () = assert!(LOGICAL_LEN_AT + 8 == BLOCKS_AT);
const _: () = assert!(SOURCE_CRC_AT + 4 <= 40 && SOURCE_LEN_AT + 4 <= 60);
const _: () = assert!(MIN_BLOCK_SHIFT <= DEFAULT_BLOCK_SHIFT && DEFAULT_BLOCK_SHIFT <= MAX_BLOCK_SHIFT);
// A logical block holds whole cache blocks (crate::block_cache::BLOCK_BYTES = 4 KiB).
const _: () = assert!((1u64 << MIN_BLOCK_SHIFT) >= crate::block_cache::BLOCK_BYTES);
const _: () = assert!((1u64 << MIN_BLOCK_SHIFT).is_multiple_of(crate::block_cache::BLOCK_BYTES));

/// Damage found in a compressed segment: the byte offset in the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compressed segment at byte {offset}: {reason}")]
pub struct Corrupt {
    pub offset: u64,
    pub reason: String,
}

fn corrupt(offset: usize, reason: impl Into<String>) -> Corrupt {
    Corrupt { offset: offset as u64, reason: reason.into() }
}

/// One compressed block: where it is in the file and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

/// A compressed segment's block table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub block_shift: u32,
    pub logical_len: u64,
    pub blocks: Vec<BlockRef>,
}

impl Table {
    pub fn block_bytes(&self) -> u64 {
        1 << self.block_shift
    }
    /// The logical range block `i` decompresses to.
    pub fn logical_range(&self, i: usize) -> std::ops::Range<u64> {
        let start = (i as u64) << self.block_shift;
        start..(start + self.block_bytes()).min(self.logical_len)
    }
    /// The block holding logical byte `offset`.
    pub fn block_of(&self, offset: u64) -> usize {
        (offset >> self.block_shift) as usize
    }
}



/// LZ4's bound on the compressed size of `n` input bytes.
pub fn max_compressed(n: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(n)
}

/// The number of table bytes the block header in `head` (at least [`TABLE_OFFSET`] bytes of a
/// file of `file_len` bytes) announces, once its fields are within bounds: what a reader reads
/// next, before [`decode_table`].
pub fn table_bytes(head: &[u8], file_len: u64) -> Result<usize, Corrupt> {
    if head.len() < TABLE_OFFSET || file_len < TABLE_OFFSET as u64 {
        return Err(corrupt(0, format!("{file_len} bytes: too short for a compressed segment")));
    }
    if head[MAGIC_AT..MAGIC_AT + 8] != BLOCK_MAGIC {
        return Err(corrupt(MAGIC_AT, "bad block header magic"));
    }
    let codec = u32_at(head, CODEC_AT);
    if codec != CODEC_LZ4 {
        return Err(corrupt(CODEC_AT, format!("unknown codec {codec}")));
    }
    let shift = u32_at(head, SHIFT_AT);
    if !(MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&shift) {
        return Err(corrupt(SHIFT_AT, format!("block size 2^{shift} out of bounds")));
    }
    let logical = u64_at(head, LOGICAL_LEN_AT);
    if !(SEGMENT_HEADER_BYTES as u64..=MAX_SEGMENT_FILE_BYTES).contains(&logical) {
        return Err(corrupt(LOGICAL_LEN_AT, format!("logical length {logical} out of bounds")));
    }
    let blocks = u64::from(u32_at(head, BLOCKS_AT));
    if blocks != logical.div_ceil(1 << shift) || blocks > MAX_BLOCKS {
        return Err(corrupt(BLOCKS_AT, format!("{blocks} blocks for {logical} bytes in blocks of 2^{shift}")));
    }
    let table = blocks as usize * TABLE_ENTRY_BYTES;
    if (TABLE_OFFSET + table) as u64 > file_len {
        return Err(corrupt(BLOCKS_AT, format!("a table of {blocks} blocks does not fit in {file_len} bytes")));
    }
    Ok(table)
}

/// Decodes and checks the block header and table from `head` (the file's first
/// `TABLE_OFFSET + table_bytes` bytes at least) of a file of `file_len` bytes: checksum, every
/// length within LZ4's bound, and the blocks ending exactly at the end of the file.
pub fn decode_table(head: &[u8], file_len: u64) -> Result<Table, Corrupt> {
    let table_len = table_bytes(head, file_len)?;
    let end = TABLE_OFFSET + table_len;
    if head.len() < end {
        return Err(corrupt(TABLE_OFFSET, "block table cut short"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[BLOCK_HEADER_OFFSET..TABLE_CRC_AT]);
    hasher.update(&head[TABLE_OFFSET..end]);
    let computed = hasher.finalize() ^ CRC_MASK;
    let stored = u32_at(head, TABLE_CRC_AT);
    if stored != computed {
        return Err(corrupt(TABLE_CRC_AT, format!("block table checksum {stored:#010x}, computed {computed:#010x}")));
    }
    let block_shift = u32_at(head, SHIFT_AT);
    let logical_len = u64_at(head, LOGICAL_LEN_AT);
    let bound = max_compressed(1 << block_shift) as u64;
    let mut offset = end as u64;
    let mut blocks = Vec::with_capacity(table_len / TABLE_ENTRY_BYTES);
    for (i, entry) in head[TABLE_OFFSET..end].chunks_exact(TABLE_ENTRY_BYTES).enumerate() {
        let len = u32_at(entry, 0);
        if len == 0 || u64::from(len) > bound {
            return Err(corrupt(TABLE_OFFSET + i * TABLE_ENTRY_BYTES, format!("block {i}: compressed length {len}")));
        }
        blocks.push(BlockRef { offset, len, crc: u32_at(entry, 4) });
        offset += u64::from(len);
    }
    if offset != file_len {
        return Err(corrupt(
            end.min(file_len as usize),
            format!("the blocks end at byte {offset}, the file at {file_len}"),
        ));
    }
    Ok(Table { block_shift, logical_len, blocks })
}

/// Checks block `i`'s compressed bytes against its checksum and decompresses them into `out`
/// (cleared first), which then holds exactly the block's logical bytes.
pub fn decode_block(table: &Table, i: usize, compressed: &[u8], out: &mut Vec<u8>) -> Result<(), Corrupt> {
    let range = table.logical_range(i);
    out.clear();
    out.resize(range.end.saturating_sub(range.start) as usize, 0);
    decode_block_into(table, i, compressed, out)
}

/// [`decode_block`] into `out`, which must be exactly the block's logical length.
pub fn decode_block_into(table: &Table, i: usize, compressed: &[u8], out: &mut [u8]) -> Result<(), Corrupt> {
    let block = table.blocks.get(i).ok_or_else(|| corrupt(TABLE_OFFSET, format!("no block {i}")))?;
    let at = block.offset as usize;
    if compressed.len() != block.len as usize {
        return Err(corrupt(at, format!("block {i}: {} bytes read, {} expected", compressed.len(), block.len)));
    }
    let computed = crc32fast::hash(compressed) ^ CRC_MASK;
    if computed != block.crc {
        return Err(corrupt(at, format!("block {i}: checksum {:#010x}, computed {computed:#010x}", block.crc)));
    }
    let range = table.logical_range(i);
    let want = (range.end - range.start) as usize;
    if out.len() != want {
        return Err(corrupt(at, format!("block {i}: {want} logical bytes, {} expected", out.len())));
    }
    match lz4_flex::block::decompress_into(compressed, out) {
        Ok(n) if n == want => Ok(()),
        Ok(n) => Err(corrupt(at, format!("block {i}: decompresses to {n} bytes, {want} expected"))),
        Err(e) => Err(corrupt(at, format!("block {i}: does not decompress: {e}"))),
    }
}

/// The logical segment of a whole compressed file (what recovery, verify, compaction and the
/// fuzz target read): header and table checked, then every block. Bounded by the file.
pub fn decode_file(file: &[u8]) -> Result<Vec<u8>, Corrupt> {
    let table = decode_table(file, file.len() as u64)?;
    // `decode_table` checked the blocks fill the file; the logical length is at most 4 GiB,
    // and at most LZ4's ratio (255:1) times the file.
    if table.logical_len > (file.len() as u64).saturating_mul(256) {
        return Err(corrupt(LOGICAL_LEN_AT, "logical length beyond what the blocks can hold"));
    }
    // Grown as blocks decode (each to exactly its logical size), not reserved from the header:
    // memory follows what the blocks really hold.
    let mut logical = Vec::new();
    let mut block = Vec::new();
    for (i, b) in table.blocks.iter().enumerate() {
        decode_block(&table, i, &file[b.offset as usize..(b.offset + u64::from(b.len)) as usize], &mut block)?;
        logical.extend_from_slice(&block);
    }
    if logical[..SEGMENT_HEADER_BYTES] != file[..SEGMENT_HEADER_BYTES] {
        return Err(corrupt(0, "the logical header differs from the file's header"));
    }
    Ok(logical)
}

/// Encodes `logical` (a whole sealed segment whose header already carries the COMPRESSED flag)
/// in blocks of `2^block_shift` bytes with LZ4.
pub fn encode(logical: &[u8], block_shift: u32) -> Vec<u8> {
    assert!((MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&block_shift));
    assert!(logical.len() >= SEGMENT_HEADER_BYTES && logical.len() as u64 <= MAX_SEGMENT_FILE_BYTES);
    let block = 1usize << block_shift;
    let n = logical.len().div_ceil(block);
    let mut table = Vec::with_capacity(n * TABLE_ENTRY_BYTES);
    let mut data = Vec::with_capacity(logical.len() / 2);
    for chunk in logical.chunks(block) {
        let compressed = lz4_flex::block::compress(chunk);
        table.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        table.extend_from_slice(&(crc32fast::hash(&compressed) ^ CRC_MASK).to_le_bytes());
        data.extend_from_slice(&compressed);
    }
    let mut out = Vec::with_capacity(TABLE_OFFSET + table.len() + data.len());
    out.extend_from_slice(&logical[..SEGMENT_HEADER_BYTES]);
    out.extend_from_slice(&BLOCK_MAGIC);
    out.extend_from_slice(&CODEC_LZ4.to_le_bytes());
    out.extend_from_slice(&block_shift.to_le_bytes());
    out.extend_from_slice(&(logical.len() as u64).to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[BLOCK_HEADER_OFFSET..TABLE_CRC_AT]);
    hasher.update(&table);
    out.extend_from_slice(&(hasher.finalize() ^ CRC_MASK).to_le_bytes());
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{decode_header, encode_header, CompressedFrom, SegmentHeader};

    fn logical(frames: usize) -> Vec<u8> {
        let header = SegmentHeader {
            compressed: Some(CompressedFrom { source_crc: 0xABCD_1234, source_len: 64 + frames as u32 * 100 }),
            ..SegmentHeader::new(7, 1)
        };
        let mut out = encode_header(&header).to_vec();
        for i in 0..frames {
            out.extend_from_slice(format!("{{\"order\":{i:06},\"sku\":\"AC-MUG-12OZ\",\"qty\":{}}}", i % 7).as_bytes());
            out.resize(64 + (i + 1) * 100, b' ');
        }
        out
    }

    #[test]
    fn roundtrip_and_layout() {
        for frames in [0, 1, 40, 41, 2000] {
            let logical = logical(frames);
            let file = encode(&logical, MIN_BLOCK_SHIFT);
            assert_eq!(decode_file(&file).unwrap(), logical);
            assert_eq!(&file[..64], &logical[..64]);
            let header = decode_header(&file).unwrap();
            assert_eq!(header.compressed.unwrap().source_crc, 0xABCD_1234);
            let table = decode_table(&file, file.len() as u64).unwrap();
            assert_eq!(table.blocks.len(), logical.len().div_ceil(4096));
            assert_eq!(table.logical_len, logical.len() as u64);
            // Random access: any block alone gives its logical range.
            let mut out = Vec::new();
            for (i, b) in table.blocks.iter().enumerate() {
                decode_block(&table, i, &file[b.offset as usize..][..b.len as usize], &mut out).unwrap();
                let r = table.logical_range(i);
                assert_eq!(out[..], logical[r.start as usize..r.end as usize]);
                assert_eq!(table.block_of(r.start), i);
            }
        }
        // Repetitive JSON compresses.
        let logical = logical(2000);
        assert!(encode(&logical, DEFAULT_BLOCK_SHIFT).len() * 3 < logical.len());
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_reported_not_panicked() {
        let logical = logical(100);
        let file = encode(&logical, MIN_BLOCK_SHIFT);
        for at in 64..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            let err = decode_file(&bad).expect_err("a flipped byte is found");
            assert!(err.offset <= at.max(TABLE_CRC_AT) as u64, "byte {at} reported at {}", err.offset);
        }
        for len in 0..file.len() {
            assert!(decode_file(&file[..len]).is_err(), "cut at {len} accepted");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(decode_file(&longer).is_err());
    }

    #[test]
    fn lengths_are_bounded_before_allocation() {
        let logical = logical(10);
        let mut file = encode(&logical, MIN_BLOCK_SHIFT);
        // A huge block count or logical length is refused from the header alone.
        file[BLOCKS_AT..BLOCKS_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(table_bytes(&file, file.len() as u64).unwrap_err().offset, BLOCKS_AT as u64);
        let mut file = encode(&logical, MIN_BLOCK_SHIFT);
        file[LOGICAL_LEN_AT..LOGICAL_LEN_AT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(table_bytes(&file, file.len() as u64).unwrap_err().offset, LOGICAL_LEN_AT as u64);
        let mut file = encode(&logical, MIN_BLOCK_SHIFT);
        file[SHIFT_AT..SHIFT_AT + 4].copy_from_slice(&40u32.to_le_bytes());
        assert_eq!(table_bytes(&file, file.len() as u64).unwrap_err().offset, SHIFT_AT as u64);
        assert!(max_compressed(1 << MAX_BLOCK_SHIFT) < u32::MAX as usize);
    }
}
