//! The cold tier (src/archive.rs): Parquet files read back with the parquet crate's own Arrow
//! reader and compared row by row with the input; read order; pending jobs; rollback; what
//! `verify` catches; hostile manifests; and a fault sweep over every file-system operation of
//! `write_job`, with and without a simulated power loss afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};
use base64::Engine as _;
use logbook::storage::{std_fs, Fault, OpKind, PowerLoss, SimFileSystem};
use logbook::Error;
use logbook::Severity;
use logbook::ARCHIVE_MANIFEST_FILE as MANIFEST_FILE;
use logbook_archive::{self as archive, Archive, ArchivedEvent, Manifest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const DAY: i64 = 86_400_000_000;
/// 2026-01-02T00:00:00Z
const JAN_2: i64 = 1_767_312_000_000_000;

fn event(position: u64, stream: &str, version: u64, timestamp_us: i64, data: &[u8], metadata: &[u8]) -> ArchivedEvent {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&position.to_be_bytes());
    id[8..].copy_from_slice(&(version ^ 0xa5a5).to_le_bytes());
    ArchivedEvent {
        position,
        stream: stream.into(),
        version,
        event_type: format!("Type{}", position % 3),
        timestamp_us,
        id,
        metadata: metadata.to_vec(),
        data: data.to_vec(),
    }
}

/// Three tenants, two dates, JSON, non-JSON, non-UTF-8 and empty payloads and metadata.
fn sample() -> Vec<ArchivedEvent> {
    vec![
        event(1, "acme:order-1", 1, JAN_2 + 10, br#"{"total": 12.5}"#, br#"{"by":"u1"}"#),
        event(2, "globex:order-2", 1, JAN_2 + 20, b"plain text", b""),
        event(3, "order-3", 1, JAN_2 + 30, &[0, 159, 146, 150, 255], b"not json either"),
        event(4, "acme:order-1", 2, JAN_2 + DAY + 5, b"", b""),
        event(5, "order-3", 2, JAN_2 + DAY - 1, b"[1, 2, 3]", b"\"a string\""),
        event(6, "acme:order-1", 3, JAN_2 + DAY + 7, b"  42 ", b"{}"),
        event(7, "globex:order-2", 2, JAN_2 - 1, b"null", b"{\"k\":\"\xc3\xa9\"}"),
    ]
}

/// A scratch directory, in memory when the machine has /dev/shm: the fault sweeps below make
/// thousands of fsyncs, which the simulation (not the disk) is there to judge.
fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

fn open(root: &Path) -> Archive {
    Archive::open(root, std_fs()).unwrap()
}

/// What the spec says a payload column holds, computed independently of the crate.
fn expected_column(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) if serde_json::from_str::<serde_json::Value>(text).is_ok() => (text.to_string(), "json"),
        _ => (format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(bytes)), "base64"),
    }
}

fn strings<'a>(batch: &'a arrow_array::RecordBatch, name: &str) -> &'a StringArray {
    batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap()
}

#[test]
fn files_read_back_with_the_parquet_crate_match_every_row() {
    let dir = scratch();
    let root = dir.path().join("archive");
    let mut archive = open(&root);
    assert!(!root.exists(), "open creates nothing");
    assert_eq!(archive.next_job_id(), 1);
    let mut input = sample();
    input.reverse(); // write_job sorts by position
    let written = archive.write_job(42, None, input).unwrap();
    assert_eq!(archive.next_job_id(), 43);
    let partitions: Vec<(&str, &str)> = written.iter().map(|f| (f.tenant.as_str(), f.date.as_str())).collect();
    assert_eq!(
        partitions,
        [
            ("acme", "2026-01-02"),
            ("acme", "2026-01-03"),
            ("default", "2026-01-02"),
            ("globex", "2026-01-01"),
            ("globex", "2026-01-02")
        ]
    );
    let by_position: std::collections::HashMap<u64, ArchivedEvent> =
        sample().into_iter().map(|e| (e.position, e)).collect();
    let mut seen = 0;
    for file in &written {
        assert!(file.path.starts_with(&format!("tenant={}/date={}/job-000042-", file.tenant, file.date)));
        let path = root.join(&file.path);
        assert_eq!(fs::metadata(&path).unwrap().len(), file.bytes);
        let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).unwrap()).unwrap();
        for column in builder.metadata().row_group(0).columns() {
            assert_eq!(column.compression(), parquet::basic::Compression::SNAPPY);
        }
        let schema = builder.schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["position", "stream", "version", "type", "time", "id", "data", "meta", "data_encoding", "meta_encoding"]
        );
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
        assert_eq!(schema.field(4).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        for i in [1, 3, 5, 6, 7, 8, 9] {
            assert_eq!(schema.field(i).data_type(), &DataType::Utf8, "{}", schema.field(i).name());
        }
        let mut positions_in_file = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let int = |name| batch.column_by_name(name).unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            let time = batch.column_by_name("time").unwrap();
            let time = time.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            for row in 0..batch.num_rows() {
                let position = int("position").value(row) as u64;
                positions_in_file.push(position);
                let e = &by_position[&position];
                assert_eq!(strings(&batch, "stream").value(row), e.stream);
                assert_eq!(int("version").value(row) as u64, e.version);
                assert_eq!(strings(&batch, "type").value(row), e.event_type);
                assert_eq!(time.value(row), e.timestamp_us);
                assert_eq!(strings(&batch, "id").value(row), uuid::Uuid::from_bytes(e.id).hyphenated().to_string());
                let (data, data_enc) = expected_column(&e.data);
                assert_eq!(
                    (strings(&batch, "data").value(row), strings(&batch, "data_encoding").value(row)),
                    (data.as_str(), data_enc)
                );
                let (meta, meta_enc) = (strings(&batch, "meta"), strings(&batch, "meta_encoding"));
                if e.metadata.is_empty() {
                    assert!(meta.is_null(row) && meta_enc.is_null(row), "no metadata is NULL");
                } else {
                    let (expected, expected_enc) = expected_column(&e.metadata);
                    assert_eq!((meta.value(row), meta_enc.value(row)), (expected.as_str(), expected_enc));
                }
                assert_eq!(archive::date_of(e.timestamp_us), file.date);
                seen += 1;
            }
        }
        assert!(positions_in_file.windows(2).all(|w| w[0] < w[1]), "rows sorted by position");
        assert_eq!(positions_in_file.len() as u64, file.rows);
        assert_eq!(
            (positions_in_file[0], *positions_in_file.last().unwrap()),
            (file.first_position, file.last_position)
        );
    }
    assert_eq!(seen, 7);
    // Spot checks of the encodings the spec spells out.
    assert_eq!(expected_column(b""), ("\"\"".to_string(), "base64"));
    assert_eq!(expected_column(&[0, 1, 2]), ("\"AAEC\"".to_string(), "base64"));
    // And decode_parquet gives back the exact bytes.
    for file in &written {
        let bytes = fs::read(root.join(&file.path)).unwrap();
        for e in archive::decode_parquet(&bytes, Path::new(&file.path)).unwrap() {
            assert_eq!(e, by_position[&e.position]);
        }
    }
    // The manifest on disk is what the archive holds.
    let reopened = open(&root);
    assert_eq!(reopened.manifest(), archive.manifest());
    assert_eq!(reopened.event_count(), 7);
}

#[test]
fn reads_come_in_version_and_position_order() {
    let dir = scratch();
    let mut archive = open(dir.path());
    let all = sample();
    // Later positions first, in another job.
    archive.write_job(1, None, all[3..].to_vec()).unwrap();
    archive.write_job(2, None, all[..3].to_vec()).unwrap();
    let versions: Vec<u64> = archive.read_stream("acme:order-1").unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let stream3 = archive.read_stream("order-3").unwrap();
    assert_eq!(stream3, vec![all[2].clone(), all[4].clone()]);
    assert!(archive.read_stream("acme:nothing").unwrap().is_empty());
    assert_eq!(archive.read_range(1, u64::MAX).unwrap(), all);
    assert_eq!(archive.read_range(3, 5).unwrap(), all[2..5].to_vec());
    assert!(archive.read_range(8, 9).unwrap().is_empty());
    assert_eq!(archive.event_count(), 7);
    // Job ids are never reused.
    assert!(matches!(archive.write_job(1, None, vec![event(9, "x", 1, 0, b"", b"")]), Err(Error::InvalidInput(_))));
    assert!(archive.write_job(5, None, Vec::new()).unwrap().is_empty());
}

#[test]
fn pending_jobs_are_invisible_until_committed_and_rollback_removes_files() {
    let dir = scratch();
    let root = dir.path().join("archive");
    let mut archive = open(&root);
    let all = sample();
    archive.write_job(1, None, all[..2].to_vec()).unwrap();
    let job = archive.next_job_id();
    let files = archive.write_job(job, Some(1000), all[2..5].to_vec()).unwrap();
    // A second chunk of the same pending job.
    let more = archive.write_job(job, Some(1000), all[5..].to_vec()).unwrap();
    assert!(matches!(archive.write_job(job, Some(7), all[5..].to_vec()), Err(Error::InvalidInput(_))));
    assert_eq!(archive.pending_jobs(), vec![(job, 1000)]);
    assert_eq!(archive.event_count(), 2);
    assert_eq!(archive.read_range(1, 100).unwrap(), all[..2].to_vec());
    assert!(archive.read_stream("order-3").unwrap().is_empty());
    let (findings, positions) = archive.verify();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(positions, [1, 2], "pending positions are not committed");

    let mut reopened = open(&root);
    assert_eq!(reopened.pending_jobs(), vec![(job, 1000)]);
    reopened.commit_job(job).unwrap();
    assert!(matches!(reopened.commit_job(job), Err(Error::InvalidInput(_))));
    let reopened = open(&root);
    assert!(reopened.pending_jobs().is_empty());
    assert_eq!(reopened.read_range(1, 100).unwrap(), all);

    // Rollback: the manifest forgets the job and its files are gone.
    let mut archive = open(&root);
    let job = archive.next_job_id();
    let doomed = archive.write_job(job, Some(2000), vec![event(8, "acme:order-9", 1, JAN_2, b"{}", b"")]).unwrap();
    assert!(root.join(&doomed[0].path).exists());
    archive.rollback_job(job).unwrap();
    assert!(!root.join(&doomed[0].path).exists());
    assert!(matches!(archive.rollback_job(job), Err(Error::InvalidInput(_))));
    let reopened = open(&root);
    assert!(reopened.pending_jobs().is_empty());
    assert!(reopened.manifest().files.iter().all(|f| f.job != job));
    assert_eq!(reopened.event_count(), 7);
    assert!(files.iter().chain(&more).all(|f| root.join(&f.path).exists()));
    let (findings, _) = reopened.verify();
    assert!(findings.is_empty(), "{findings:?}");
}

fn write_sample(root: &Path) -> Archive {
    let mut archive = open(root);
    archive.write_job(1, None, sample()).unwrap();
    archive
}

fn corruption_for(findings: &[logbook::Finding], file: &Path) -> bool {
    findings.iter().any(|f| f.severity == Severity::Corruption && f.file == file)
}

#[test]
fn verify_catches_flipped_bytes_missing_files_duplicates_and_orphans() {
    let dir = scratch();
    let root = dir.path().join("archive");
    let archive = write_sample(&root);
    let (findings, positions) = archive.verify();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(positions, (1..=7).collect::<Vec<u64>>());
    let files: Vec<PathBuf> = archive.manifest().files.iter().map(|f| root.join(&f.path)).collect();

    // A flipped byte in the middle of a file.
    let mut bytes = fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&files[0], &bytes).unwrap();
    // A missing file.
    fs::remove_file(&files[1]).unwrap();
    // An orphan: a copy of a good file under a name the manifest does not list.
    let orphan = files[2].with_file_name("job-000099-00000000000000000001.parquet");
    fs::copy(&files[2], &orphan).unwrap();
    let (findings, positions) = open(&root).verify();
    assert!(corruption_for(&findings, &files[0]), "{findings:?}");
    assert!(findings.iter().any(|f| f.file == files[1] && f.reason.contains("missing")), "{findings:?}");
    let orphans: Vec<_> = findings.iter().filter(|f| f.severity == Severity::Orphan).collect();
    assert_eq!(orphans.len(), 1, "{findings:?}");
    assert_eq!(orphans[0].file, orphan);
    assert!(orphans[0].reason.contains("interrupted"));
    assert_eq!(findings.len(), 3, "{findings:?}");
    assert!(positions.len() < 7);
    // Reads of a damaged file fail naming it; reads of others still work.
    let err = open(&root).read_range(1, 100).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");

    // Duplicate positions across two committed files.
    let dir = scratch();
    let root = dir.path().join("archive");
    let mut archive = write_sample(&root);
    archive.write_job(2, None, vec![event(3, "order-3", 1, JAN_2 + 30, b"{}", b"")]).unwrap();
    let (findings, _) = archive.verify();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].severity == Severity::Corruption && findings[0].reason.contains("position 3 is also in"));
}

#[test]
fn verify_catches_rows_in_the_wrong_partition_and_a_bad_manifest_entry() {
    let dir = scratch();
    let root = dir.path().join("archive");
    let archive = write_sample(&root);
    // Rewrite the manifest so a globex file claims to be acme's (path and tenant together, so
    // the manifest itself is well formed).
    let mut manifest: Manifest = archive.manifest().clone();
    let i = manifest.files.iter().position(|f| f.tenant == "globex" && f.date == "2026-01-02").unwrap();
    let old = root.join(&manifest.files[i].path);
    let name = old.file_name().unwrap().to_str().unwrap().to_string();
    fs::create_dir_all(root.join("tenant=acme/date=2026-01-02")).unwrap();
    let new_rel = format!("tenant=acme/date=2026-01-02/{}", name.replace("job-000001", "job-000000"));
    fs::rename(&old, root.join(&new_rel)).unwrap();
    manifest.files[i].path = new_rel.clone();
    manifest.files[i].tenant = "acme".into();
    manifest.files[i].job = 0;
    fs::write(root.join(MANIFEST_FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (findings, _) = open(&root).verify();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].reason.contains("does not belong in partition tenant=acme"), "{findings:?}");
}

#[test]
fn hostile_or_oversized_manifests_are_refused() {
    let dir = scratch();
    let root = dir.path().join("archive");
    let archive = write_sample(&root);
    let good = serde_json::to_value(archive.manifest()).unwrap();
    let refuse = |value: &serde_json::Value, what: &str| {
        fs::write(root.join(MANIFEST_FILE), serde_json::to_vec(value).unwrap()).unwrap();
        match Archive::open(&root, std_fs()) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, root.join(MANIFEST_FILE), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    };
    for path in [
        "tenant=acme/date=2026-01-02/../../../etc/passwd.parquet",
        "../outside.parquet",
        "/tmp/x.parquet",
        "tenant=acme/date=2026-01-02/sub/x.parquet",
    ] {
        let mut bad = good.clone();
        bad["files"][0]["path"] = path.into();
        refuse(&bad, path);
    }
    let mut bad = good.clone();
    bad["files"][0]["path"] = "x".repeat(600).into();
    refuse(&bad, "long path");
    let mut bad = good.clone();
    bad["files"][0]["tenant"] = "..".into();
    bad["files"][0]["path"] = "tenant=../date=2026-01-02/x.parquet".into();
    refuse(&bad, "tenant ..");
    let mut bad = good.clone();
    bad["format"] = 2.into();
    refuse(&bad, "format");
    let mut bad = good.clone();
    bad["next_job"] = 1.into();
    refuse(&bad, "job not below next_job");
    fs::write(root.join(MANIFEST_FILE), b"{not json").unwrap();
    assert!(matches!(Archive::open(&root, std_fs()), Err(Error::Corruption { .. })));
    // Over 256 MiB (sparse): refused before reading.
    let file = fs::File::create(root.join(MANIFEST_FILE)).unwrap();
    file.set_len((256 << 20) + 1).unwrap();
    let err = Archive::open(&root, std_fs()).unwrap_err();
    assert!(err.to_string().contains("manifest refused"), "{err}");
    // The refusal never touched the files.
    assert!(archive.manifest().files.iter().all(|f| root.join(&f.path).exists()));
}

/// The manifest after one clean `write_job(2, None, new_events())` on top of `base`.
fn new_events() -> Vec<ArchivedEvent> {
    vec![
        event(10, "acme:order-7", 1, JAN_2 + 3 * DAY, b"{\"n\":1}", b""),
        event(11, "globex:order-8", 1, JAN_2 + 3 * DAY, &[1, 2, 3], b"{}"),
        event(12, "acme:order-7", 2, JAN_2 + 4 * DAY, b"x", b""),
    ]
}

fn base_events() -> Vec<ArchivedEvent> {
    sample()[..3].to_vec()
}

/// Sets up `root` (optionally with a committed job 1 written on the real file system), then
/// runs job 2 on `sim`. Returns the manifest before and the result.
fn run_job(root: &Path, with_base: bool, sim: &SimFileSystem) -> (Manifest, Archive, Result<(), Error>) {
    if with_base {
        open(root).write_job(1, None, base_events()).unwrap();
    }
    let old = open(root).manifest().clone();
    let mut archive = Archive::open(root, Arc::new(sim.clone())).unwrap();
    let result = archive.write_job(2, None, new_events()).map(|_| ());
    (old, archive, result)
}

/// Old or new manifest, nothing corrupt, and the reads match the manifest.
fn check_state(root: &Path, old: &Manifest, new: &Manifest, context: &str) -> bool {
    let archive = Archive::open(root, std_fs()).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let is_new = archive.manifest() == new;
    assert!(
        is_new || archive.manifest() == old,
        "{context}: manifest is neither old nor new: {:?}",
        archive.manifest()
    );
    let (findings, positions) = archive.verify();
    assert!(findings.iter().all(|f| f.severity == Severity::Orphan), "{context}: {findings:?}");
    let mut expected: Vec<u64> = if old.files.is_empty() { vec![] } else { vec![1, 2, 3] };
    if is_new {
        expected.extend([10, 11, 12]);
    }
    assert_eq!(positions, expected, "{context}");
    assert_eq!(archive.read_range(0, u64::MAX).unwrap().len(), expected.len(), "{context}");
    is_new
}

#[test]
fn a_fault_at_any_step_of_write_job_leaves_the_old_or_the_new_manifest() {
    let mut expected_new = Vec::new();
    let mut counts = Vec::new();
    for with_base in [false, true] {
        let dir = scratch();
        let sim = SimFileSystem::new();
        let (_, archive, result) = run_job(&dir.path().join("archive"), with_base, &sim);
        result.unwrap();
        expected_new.push(archive.manifest().clone());
        counts.push([OpKind::Write, OpKind::Sync, OpKind::Metadata].map(|k| (k, sim.count(k))));
    }
    assert!(counts[0].iter().all(|&(_, n)| n >= 4), "{counts:?}");
    let mut runs = 0;
    for (case, with_base) in [false, true].into_iter().enumerate() {
        for (kind, n) in counts[case] {
            for nth in 1..=n {
                let torn: &[Option<usize>] = if kind == OpKind::Write { &[None, Some(7)] } else { &[None] };
                for &torn_at in torn {
                    let context = format!("base {with_base}, {kind:?} #{nth} torn {torn_at:?}");
                    let dir = scratch();
                    let root = dir.path().join("archive");
                    let sim = SimFileSystem::new();
                    sim.fail(Fault { kind, nth, torn_at });
                    let (old, mut archive, result) = run_job(&root, with_base, &sim);
                    assert!(result.is_err(), "{context}: the fault must surface");
                    assert_eq!(sim.injected(), 1, "{context}");
                    check_state(&root, &old, &expected_new[case], &context);
                    // A retry on the same handle (the fault is spent) reaches the new state.
                    archive.write_job(2, None, new_events()).unwrap_or_else(|e| panic!("{context}: retry: {e}"));
                    assert!(check_state(&root, &old, &expected_new[case], &context), "{context}: retry");
                    runs += 1;
                }
            }
        }
    }
    assert!(runs > 40, "{runs}");
}

#[test]
fn a_power_loss_after_any_fault_or_after_success_never_leaves_a_dangling_manifest() {
    let dir = scratch();
    let sim = SimFileSystem::new();
    let (_, _, result) = run_job(&dir.path().join("archive"), false, &sim);
    result.unwrap();
    let total = [OpKind::Write, OpKind::Sync, OpKind::Metadata].map(|k| (k, sim.count(k)));
    let empty = Manifest::default();
    let new = {
        let dir = scratch();
        let (_, archive, result) = run_job(&dir.path().join("archive"), false, &SimFileSystem::new());
        result.unwrap();
        archive.manifest().clone()
    };
    let modes = [PowerLoss::DropUnsynced, PowerLoss::CutUnsynced, PowerLoss::GarbageUnsynced];
    let mut seed = 1;
    // nth = 0: no fault, the job succeeded, and must survive.
    for (kind, n) in total {
        for nth in 0..=n {
            for mode in modes {
                seed += 1;
                let context = format!("{kind:?} #{nth} then {mode:?} seed {seed}");
                let dir = scratch();
                let root = dir.path().join("archive");
                let sim = SimFileSystem::new();
                if nth > 0 {
                    sim.fail(Fault { kind, nth, torn_at: None });
                }
                let (_, archive, result) = run_job(&root, false, &sim);
                assert_eq!(result.is_ok(), nth == 0, "{context}");
                drop(archive);
                sim.power_off();
                if root.exists() {
                    sim.restore_durable(&root, mode, seed).unwrap();
                }
                let is_new = check_state(&root, &empty, &new, &context);
                if nth == 0 {
                    assert!(is_new, "{context}: an acknowledged job was lost");
                }
            }
        }
    }
}

/// The order that makes the above true, checked on the recorded operations (the simulation's
/// power loss keeps a renamed file that was never synced, so it alone would not notice a
/// missing file sync): each file is synced before its rename, its directory synced after,
/// and all of that before the manifest is renamed into place.
#[test]
fn every_file_is_durable_before_the_manifest_names_it() {
    use logbook::storage::Op;
    let dir = scratch();
    let root = dir.path().join("archive");
    let sim = SimFileSystem::new();
    let (_, archive, result) = run_job(&root, false, &sim);
    result.unwrap();
    let ops = sim.ops();
    let at = |want: &Op| ops.iter().position(|op| op == want).unwrap_or_else(|| panic!("missing {want:?} in {ops:?}"));
    let manifest = root.join(MANIFEST_FILE);
    let manifest_tmp = root.join("_manifest.json.tmp");
    let manifest_rename = at(&Op::Rename(manifest_tmp.clone(), manifest.clone()));
    assert!(at(&Op::SyncAll(manifest_tmp)) < manifest_rename);
    assert!(ops.iter().rposition(|op| *op == Op::SyncDir(root.clone())).is_some_and(|i| i > manifest_rename));
    for file in &archive.manifest().files {
        let path = root.join(&file.path);
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let dir = path.parent().unwrap().to_path_buf();
        let rename = at(&Op::Rename(tmp.clone(), path.clone()));
        assert!(at(&Op::SyncAll(tmp)) < rename, "{path:?}");
        let dir_sync = ops[rename..].iter().position(|op| *op == Op::SyncDir(dir.clone())).map(|i| i + rename);
        assert!(dir_sync.is_some_and(|i| i < manifest_rename), "{path:?}: directory synced before the manifest");
        // The new directories' entries are durable too: the tenant directory and the root.
        let tenant_dir = dir.parent().unwrap().to_path_buf();
        assert!(ops[..manifest_rename].contains(&Op::SyncDir(tenant_dir)));
    }
    assert!(ops[..manifest_rename].contains(&Op::SyncDir(dir.path().to_path_buf())), "the root's own entry");
}
