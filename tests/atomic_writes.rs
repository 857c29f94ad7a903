//! Atomic file writes and the simulator's power-loss model (reliability.md, tests 6, 9, 19).
//!
//! A file that arrives by rename (index files at seal, CLEAN at shutdown, the segment
//! manifest, segments made from the spare, compaction's segment and index, the archive's
//! files) must be synced under its temporary name before the rename: otherwise a power loss
//! can leave the new name durable but its data not, and the file is empty. The simulator models
//! exactly that (the durable contents follow the file through a rename), so the tests here
//! check both the engine's order of operations and that the simulator would catch a missing
//! sync. The last tests pin the other parts of the model: pages lost out of order, and the
//! power going off at a chosen operation.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook::storage::{write_file_atomically, FileSystem, Op, OpKind, PowerLoss, SimFileSystem};
use logbook::{ExpectedVersion, Filter, NewEvent, Options};
use logbook::{RetentionPolicy, RetentionRule};
use logbook_archive::compact;

const MODES: [PowerLoss; 4] =
    [PowerLoss::DropUnsynced, PowerLoss::CutUnsynced, PowerLoss::GarbageUnsynced, PowerLoss::RandomPages];

/// Every rename whose source was written by the recorded operations, with a sync of the source
/// after its last write (or set_len) and before the rename? Returns the renames checked and
/// the ones that break the rule.
fn renames_without_sync(ops: &[Op]) -> (usize, Vec<String>) {
    let (mut checked, mut bad) = (0, Vec::new());
    for (i, op) in ops.iter().enumerate() {
        let Op::Rename(from, to) = op else { continue };
        let touched = |o: &Op| matches!(o, Op::Write(p, ..) | Op::SetLen(p, _) | Op::Create(p) if p == from);
        let Some(last_write) = ops[..i].iter().rposition(touched) else {
            bad.push(format!("#{i} {} -> {}: its source was never written here", from.display(), to.display()));
            continue;
        };
        let synced = ops[last_write + 1..i].iter().any(|o| matches!(o, Op::SyncAll(p) | Op::SyncData(p) if p == from));
        if !synced {
            bad.push(format!(
                "#{i} {} -> {}: not synced after its last change (#{last_write} {:?})",
                from.display(),
                to.display(),
                ops[last_write]
            ));
        }
        checked += 1;
    }
    (checked, bad)
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// `write_file_atomically` without its sync: the mistake the tests here must catch.
fn write_without_sync(fsys: &dyn FileSystem, path: &Path, bytes: &[u8]) {
    let tmp = tmp_name(path);
    let file = fsys.create(&tmp).unwrap();
    file.write_at(bytes, 0).unwrap();
    drop(file);
    fsys.rename(&tmp, path).unwrap();
    fsys.sync_dir(path.parent().unwrap()).unwrap();
}

#[test]
fn every_file_the_store_renames_into_place_was_synced_first() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    let options = || Options { segment_bytes: 2048, fs: Arc::new(sim.clone()), ..Options::default() };
    let store = logbook_archive::open_store(dir.path(), options()).unwrap();
    for i in 0..60u64 {
        let data = format!("{i}:{}", "d".repeat(40 + (i as usize * 7) % 90));
        store.append(&format!("order-{}", i % 4), ExpectedVersion::Any, vec![NewEvent::new("E", data)]).unwrap();
    }
    // Compaction: its segment and index under temporary names, and the archive's files.
    let policy = RetentionPolicy {
        rules: vec![RetentionRule { category: None, event_type: None, max_age_us: None, max_count: Some(3) }],
        ..logbook_order::default_retention_policy()
    };
    let report = compact(&store, &policy, store.now_us(), |_, _| {}).unwrap();
    assert!(report.rewritten > 0 && report.archived > 0, "{report:?}");
    store.close().unwrap();
    // A reopen removes CLEAN; a second close writes it again.
    let store = logbook_archive::open_store(dir.path(), options()).unwrap();
    store.append("order-9", ExpectedVersion::Any, vec![NewEvent::new("E", "after")]).unwrap();
    store.close().unwrap();

    let ops = sim.ops();
    let (checked, bad) = renames_without_sync(&ops);
    assert!(bad.is_empty(), "renamed before synced:\n{}", bad.join("\n"));
    let renamed_to = |suffix: &str| {
        ops.iter().filter(|o| matches!(o, Op::Rename(_, to) if to.to_string_lossy().ends_with(suffix))).count()
    };
    assert!(renamed_to(".idx") >= 3, "index files at seal and compaction");
    assert!(renamed_to(".seg") >= 2, "segments from the spare and from compaction");
    assert_eq!(renamed_to("CLEAN"), 2, "CLEAN at each close");
    assert!(checked >= 10, "{checked} renames checked");
    // Every one of those files is what a power loss right now leaves, in every mode.
    let snapshot = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), snapshot.path());
    // Read from a copy: an open writes (CLEAN, MANIFEST) outside the simulator's sight, which
    // would make its durable image of those files stale.
    let expected: Vec<String> = {
        let reference = tempfile::tempdir().unwrap();
        copy_dir(snapshot.path(), reference.path());
        let store = logbook_archive::open_store(reference.path(), Options::default()).unwrap();
        let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
        let data = all.iter().map(|e| String::from_utf8_lossy(e.data()).into_owned()).collect();
        store.close().unwrap();
        data
    };
    for (seed, mode) in MODES.into_iter().enumerate() {
        copy_dir(snapshot.path(), dir.path());
        sim.power_off();
        sim.restore_durable(dir.path(), mode, seed as u64).unwrap();
        assert!(dir.path().join("CLEAN").exists(), "{mode:?}: CLEAN was synced before its rename");
        let store = logbook_archive::open_store(dir.path(), Options::default()).unwrap();
        let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
        let data: Vec<String> = all.iter().map(|e| String::from_utf8_lossy(e.data()).into_owned()).collect();
        assert_eq!(data, expected, "{mode:?}");
        store.close().unwrap();
    }
}

/// Replaces `to` with a copy of `from` (without `LOCK`).
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    disk_support::copy_tree(from, to);
}

#[test]
fn the_rename_check_catches_a_write_renamed_before_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    write_file_atomically(&sim, &dir.path().join("good"), b"synced").unwrap();
    let (checked, bad) = renames_without_sync(&sim.ops());
    assert_eq!((checked, bad.len()), (1, 0), "{bad:?}");
    write_without_sync(&sim, &dir.path().join("bad"), b"never synced");
    let (checked, bad) = renames_without_sync(&sim.ops());
    assert_eq!((checked, bad.len()), (2, 1), "{bad:?}");
    assert!(bad[0].contains("bad.tmp"), "{bad:?}");
}

/// A rename made durable (directory synced) before the renamed file's data: after a power loss
/// the new name holds what was durable of the source, which is nothing.
#[test]
fn a_rename_persisted_before_its_data_leaves_the_file_empty_or_absent() {
    let (mut empty, mut absent) = (0, 0);
    for seed in 0..16u64 {
        let mode = MODES[seed as usize % MODES.len()];
        let dir = tempfile::tempdir().unwrap();
        let sim = SimFileSystem::new();
        // A file that arrived by rename without a sync, under a fresh name and over an old one.
        let (fresh, replaced) = (dir.path().join("fresh"), dir.path().join("replaced"));
        write_file_atomically(&sim, &replaced, b"old contents").unwrap();
        write_without_sync(&sim, &fresh, b"new contents");
        write_without_sync(&sim, &replaced, b"new contents");
        // And one done right, for contrast.
        let good = dir.path().join("good");
        write_file_atomically(&sim, &good, b"new contents").unwrap();
        assert!(
            sim.ops().iter().any(|o| *o == Op::SyncDir(dir.path().to_path_buf())),
            "the renames themselves are durable"
        );
        sim.power_off();
        sim.restore_durable(dir.path(), mode, seed).unwrap();
        for path in [&fresh, &replaced] {
            match std::fs::read(path) {
                Ok(bytes) if bytes.is_empty() => empty += 1,
                Ok(bytes) => {
                    panic!("seed {seed} {mode:?}: {} holds {:?}", path.display(), String::from_utf8_lossy(&bytes))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(std::fs::read(&good).unwrap(), b"new contents", "seed {seed} {mode:?}");
        assert!(!tmp_name(&good).exists() && !tmp_name(&fresh).exists());
    }
    assert!(empty > 0 && absent > 0, "both outcomes seen: {empty} empty, {absent} absent");
}

/// A rename never made durable is undone, and the file goes back to its old name with what was
/// durable of it; the target keeps its old durable contents.
#[test]
fn an_unsynced_rename_is_undone_with_the_durable_contents() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    let (target, tmp) = (dir.path().join("target"), dir.path().join("target.tmp"));
    write_file_atomically(&sim, &target, b"old").unwrap();
    let file = sim.create(&tmp).unwrap();
    file.write_at(b"synced", 0).unwrap();
    file.sync_all().unwrap();
    file.write_at(b" and more", 6).unwrap();
    drop(file);
    sim.sync_dir(dir.path()).unwrap();
    sim.rename(&tmp, &target).unwrap();
    sim.power_off();
    sim.restore_durable(dir.path(), PowerLoss::DropUnsynced, 3).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    assert_eq!(std::fs::read(&tmp).unwrap(), b"synced");
}

/// `RandomPages`: each unsynced 4 KiB page keeps its new contents or reverts to its durable
/// ones (zeroes past the durable end), independently, and the live length is kept.
#[test]
fn random_pages_lose_unsynced_pages_independently() {
    const PAGE: usize = SimFileSystem::PAGE_BYTES;
    let (mut patterns, mut lost_some_kept_some) = (std::collections::HashSet::new(), 0);
    for seed in 0..32u64 {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimFileSystem::new();
        let path = dir.path().join("data");
        let file = sim.create_new(&path).unwrap();
        file.write_at(&vec![1u8; PAGE + 100], 0).unwrap();
        file.sync_all().unwrap();
        sim.sync_dir(dir.path()).unwrap();
        // Unsynced: the end of page 1, pages 2..5 whole, and page 6 in part.
        file.write_at(&vec![2u8; 5 * PAGE], (PAGE + 100) as u64).unwrap();
        let live_len = 6 * PAGE + 100;
        drop(file);
        sim.power_off();
        sim.restore_durable(dir.path(), PowerLoss::RandomPages, seed).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), live_len, "seed {seed}: the live length is kept");
        assert!(after[..PAGE].iter().all(|&b| b == 1), "seed {seed}: synced page 0 intact");
        let mut pattern = Vec::new();
        for page in 1..7 {
            let bytes = &after[page * PAGE..((page + 1) * PAGE).min(live_len)];
            // Page 1's first 100 bytes were synced: kept or reverted, they stay.
            let unsynced = if page == 1 {
                assert!(bytes[..100].iter().all(|&b| b == 1), "seed {seed}: synced bytes of page 1");
                &bytes[100..]
            } else {
                bytes
            };
            let kept = unsynced.iter().all(|&b| b == 2);
            assert!(kept || unsynced.iter().all(|&b| b == 0), "seed {seed}: page {page} is neither new nor old");
            pattern.push(kept);
        }
        let (l, k) = sim.pages_lost_and_kept();
        assert_eq!(l + k, 6, "seed {seed}: six unsynced pages");
        assert_eq!(k as usize, pattern.iter().filter(|&&kept| kept).count());
        lost_some_kept_some += usize::from(l > 0 && k > 0);
        patterns.insert(pattern);
    }
    assert!(patterns.len() > 8, "pages are lost independently: {} patterns", patterns.len());
    assert!(lost_some_kept_some > 16, "{lost_some_kept_some}");
}

/// `power_off_after(n)`: the first n operations of any kind go through, the next fails and so
/// does everything after it.
#[test]
fn power_goes_off_after_the_chosen_operation() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    sim.power_off_after(3);
    let file = sim.create_new(&dir.path().join("a")).unwrap(); // 1
    file.write_at(b"x", 0).unwrap(); // 2
    file.sync_data().unwrap(); // 3
    assert!(!sim.is_powered_off());
    assert!(file.write_at(b"y", 1).is_err(), "the fourth operation fails");
    assert!(sim.is_powered_off());
    assert!(sim.sync_dir(dir.path()).is_err(), "and every later one");
    assert_eq!((sim.total_ops(), sim.count(OpKind::Write), sim.count(OpKind::Sync)), (3, 1, 1));
}
