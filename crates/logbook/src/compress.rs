//! Compression of sealed segments ([`compress_sealed`], `logbook compress`): each plain sealed
//! segment is rewritten in its compressed form ([`crate::compressed`]) and swapped in the way
//! compaction swaps its output in:
//!
//! 1. read the segment, check every frame (damage is never compressed), encode it;
//! 2. write the compressed file and its index under temporary names, each synced;
//! 3. rename both over the plain files, sync the directory (the commit point);
//! 4. readers switch over and the manifest records the new file (length, header checksum).
//!
//! A crash before 3 leaves temporaries that `open` deletes. After 3 and before 4 the manifest
//! still lists the plain file: recovery accepts the compressed file there because its header
//! names the plain file's checksum and length (and rebuilds the index if only the segment was
//! renamed). The frames, their logical offsets and the index entries do not change.
//!
//! Runs under the compaction guard (one maintenance task at a time); appends and reads go on.

use std::path::Path;
use std::sync::Arc;

use crate::compact;
use crate::compressed;
use crate::datadir::SEGMENTS_DIR;
use crate::error::{Error, Result};
use crate::index::{IndexBuilder, IndexedEvent};
use crate::options::Compression;
use crate::segment::{self, CompressedFrom, Positions, SegmentHeader};
use crate::storage::FileSystem;
use crate::store::Store;
use crate::wal::SealedSegment;

/// What [`compress_sealed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompressReport {
    /// Segments compressed by this call.
    pub segments: usize,
    /// Sealed segments already compressed (left as they are).
    pub already: usize,
    /// Events in the segments compressed by this call.
    pub events: u64,
    /// Their plain length, in bytes.
    pub uncompressed_bytes: u64,
    /// Their compressed length, in bytes.
    pub compressed_bytes: u64,
}

/// Compresses every plain sealed segment of `store` with `store.options().compression`
/// (refused when it is [`Compression::None`]). The active segment is never compressed; it is
/// when it is sealed and this runs again. Reads of compressed segments decompress one 64 KiB
/// block through the block cache.
pub fn compress_sealed(store: &Store) -> Result<CompressReport> {
    match store.options().compression {
        Compression::None => {
            return Err(Error::InvalidInput(
                "compression is off: set Options::compression (logbook compress --codec lz4)".into(),
            ))
        }
        Compression::Lz4 => {}
    }
    let guard = store.compaction_guard()?;
    let fs = Arc::clone(&store.options().fs);
    let segments_dir = store.dir().join(SEGMENTS_DIR);
    let sealed = store.shared().state.read().sealed.clone();
    let mut report = CompressReport::default();
    for segment in sealed {
        if segment.header.compressed.is_some() {
            report.already += 1;
            continue;
        }
        if let Err(err) = compress_one(store, fs.as_ref(), &segments_dir, &segment, &mut report) {
            // Files are in a state recovery resolves; the in-memory view may not match them.
            guard.poison();
            return Err(err);
        }
    }
    Ok(report)
}

fn compress_one(
    store: &Store,
    fs: &dyn FileSystem,
    segments_dir: &Path,
    segment: &SealedSegment,
    report: &mut CompressReport,
) -> Result<()> {
    let path = segment.reader.path();
    let base = segment.base_position();
    // 1. The plain segment, every frame checked.
    let mut logical = segment::read_whole(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if logical.len() as u64 != segment.len {
        let reason = format!("the file is {} bytes, it was sealed at {}", logical.len(), segment.len);
        return Err(Error::corruption(path, segment.len.min(logical.len() as u64), reason));
    }
    let source_len = u32::try_from(segment.len)
        .map_err(|_| Error::InvalidInput(format!("{} is too long to compress", path.display())))?;
    let header = SegmentHeader {
        compressed: Some(CompressedFrom { source_crc: segment.header_crc, source_len }),
        ..segment.header
    };
    logical[..segment::SEGMENT_HEADER_BYTES].copy_from_slice(&segment::encode_header(&header));
    let mut builder = IndexBuilder::default();
    let outcome = segment::scan_with(&logical, Positions::of(&segment.header), |frame, offset| {
        builder.add(&IndexedEvent::of(frame, offset));
    });
    if let Some(stop) = outcome.stop {
        return Err(Error::corruption(path, stop.offset, format!("sealed segment: {}", stop.reason)));
    }
    if outcome.frames != segment.index.event_count() as u64 {
        return Err(Error::corruption(path, 0, "the segment and its index disagree on the number of events"));
    }
    let file = compressed::encode(&logical, compressed::DEFAULT_BLOCK_SHIFT);
    // The encoder is checked by the decoder every reader uses, before anything is replaced.
    if compressed::decode_file(&file).as_deref() != Ok(&logical[..]) {
        return Err(Error::InvalidInput(format!("compressing {} did not round-trip", path.display())));
    }
    let header_crc = segment::header_crc(&file);
    let index_bytes = builder.encode(base, file.len() as u64, header_crc);
    // 2–4. In place of the plain segment, crash-safely; the manifest records the new file.
    let files = compact::Rewritten { tmp_tag: "compressing", segment: &file, index: &index_bytes, header, header_crc };
    let replacement = compact::install_sealed(store, fs, segments_dir, &[base], files)?;
    let len = replacement.len;
    report.segments += 1;
    report.events += outcome.frames;
    report.uncompressed_bytes += segment.len;
    report.compressed_bytes += len;
    Ok(())
}

