//! The state database against real SQLite files, including several connections at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use super::*;
use crate::options::BoxOptions;

fn id(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

fn record(id: &str, name: &str, created_at_ms: u64) -> BoxRecord {
    BoxRecord::created(
        id.to_string(),
        name.to_string(),
        "sha256:aaaa".into(),
        BoxOptions::new("alpine"),
        created_at_ms,
    )
}

fn db() -> (tempfile::TempDir, PathBuf, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home/state.db");
    let db = StateDb::open(&path).unwrap();
    (dir, path, db)
}

#[test]
fn state_db_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StateDb>();
}

#[test]
fn box_state_names_round_trip() {
    for state in BoxState::ALL {
        let name = state.to_string();
        assert_eq!(name.parse::<BoxState>().unwrap(), state);
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{name}\"")
        );
    }
    assert!("Running".parse::<BoxState>().is_err());
    let active: Vec<_> = BoxState::ALL
        .into_iter()
        .filter(|s| s.is_active())
        .collect();
    assert_eq!(
        active,
        [BoxState::Starting, BoxState::Running, BoxState::Stopping]
    );
}

#[test]
fn open_creates_the_parent_directory_and_uses_wal() {
    let (_dir, path, db) = db();
    assert!(path.exists());
    assert_eq!(db.path(), path);
    let mode: String = db
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = db
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::CURRENT_VERSION);
}

#[test]
fn insert_then_get_by_id_name_and_prefix() {
    let (_dir, _path, db) = db();
    let mut rec = record(&id(0xab), "web", 1);
    rec.options.env = vec![("A".into(), "b".into())];
    rec.engine = Some("qemu (tcg)".into());
    rec.boot_ms = Some(123.5);
    rec.exit_code = Some(-1);
    rec.supervisor_pid = Some(u32::MAX);
    db.insert_box(&rec).unwrap();
    assert_eq!(db.get_box(&rec.id).unwrap(), rec);
    assert_eq!(db.get_box("web").unwrap(), rec);
    assert_eq!(db.get_box("abab").unwrap(), rec);
    assert_eq!(db.get_box("ABAB").unwrap(), rec, "prefixes ignore case");
    for missing in ["aba", "cdcd", "nope", ""] {
        match db.get_box(missing) {
            Err(Error::NoSuchBox(key)) => assert_eq!(key, missing),
            other => panic!("{missing:?}: {other:?}"),
        }
    }
}

#[test]
fn an_exact_name_beats_an_id_prefix() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(0xbe), "first", 1)).unwrap();
    db.insert_box(&record(&id(0x11), "bebe", 2)).unwrap();
    assert_eq!(db.get_box("bebe").unwrap().id, id(0x11));
    assert_eq!(db.get_box("bebeb").unwrap().id, id(0xbe));
}

#[test]
fn an_ambiguous_prefix_names_the_candidates() {
    let (_dir, _path, db) = db();
    let a = format!("abcd1{}", "0".repeat(59));
    let b = format!("abcd2{}", "0".repeat(59));
    db.insert_box(&record(&a, "one", 1)).unwrap();
    db.insert_box(&record(&b, "two", 2)).unwrap();
    match db.get_box("abcd") {
        Err(Error::InvalidInput(msg)) => {
            assert!(msg.contains("ambiguous"), "{msg}");
            assert!(msg.contains("abcd1") && msg.contains("(one)"), "{msg}");
            assert!(msg.contains("abcd2") && msg.contains("(two)"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.get_box("abcd2").unwrap().name, "two");
}

#[test]
fn ids_must_be_64_lowercase_hex() {
    let (_dir, _path, db) = db();
    for bad in ["abc", &"A".repeat(64), &"g".repeat(64)] {
        assert!(matches!(
            db.insert_box(&record(bad, "x", 1)),
            Err(Error::InvalidInput(_))
        ));
    }
    db.insert_box(&record(&id(1), "x", 1)).unwrap();
    assert!(matches!(
        db.insert_box(&record(&id(1), "y", 1)),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn list_is_oldest_first() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(3), "c", 30)).unwrap();
    db.insert_box(&record(&id(1), "a", 10)).unwrap();
    db.insert_box(&record(&id(2), "b", 20)).unwrap();
    db.insert_box(&record(&id(4), "d", 20)).unwrap();
    let names: Vec<_> = db
        .list_boxes()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b", "d", "c"]);
}

#[test]
fn a_taken_name_is_refused_with_the_owner() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    match db.insert_box(&record(&id(2), "web", 2)) {
        Err(Error::NameInUse(name, other)) => {
            assert_eq!(name, "web");
            assert_eq!(other, id(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.list_boxes().unwrap().len(), 1);
}

#[test]
fn of_many_connections_creating_one_name_exactly_one_wins() {
    const RACERS: u8 = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    StateDb::open(&path).unwrap();
    let barrier = Arc::new(Barrier::new(usize::from(RACERS)));
    let handles: Vec<_> = (0..RACERS)
        .map(|n| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let db = StateDb::open(&path).unwrap();
                barrier.wait();
                db.insert_box(&record(&id(n), "contested", u64::from(n)))
                    .map(|()| id(n))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        match r {
            Ok(_) => {}
            Err(Error::NameInUse(name, other)) => {
                assert_eq!(name, "contested");
                assert_eq!(other, winners[0]);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.get_box("contested").unwrap().id, *winners[0]);
}

#[test]
fn of_processes_opening_a_fresh_database_at_once_all_succeed() {
    // Schema creation is one write transaction; concurrent openers wait, then see it done.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                StateDb::open(&path).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

#[test]
fn update_writes_and_returns_the_new_record() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    let new = db
        .update_box(&id(1), |r| {
            r.state = BoxState::Running;
            r.started_at_ms = Some(5);
            r.vm_pid = Some(42);
            r.name = "renamed".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(new.state, BoxState::Running);
    assert_eq!(db.get_box(&id(1)).unwrap(), new);
    assert_eq!(db.get_box("renamed").unwrap().id, id(1));
    assert!(matches!(db.get_box("web"), Err(Error::NoSuchBox(_))));
}

#[test]
fn an_error_in_update_rolls_back() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    db.insert_box(&record(&id(2), "db", 2)).unwrap();
    let err = db
        .update_box(&id(1), |r| {
            r.state = BoxState::Crashed;
            Err(Error::InvalidState {
                name: r.name.clone(),
                state: BoxState::Running,
                needs: crate::error::Needs::NotRunning,
            })
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }));
    assert_eq!(db.get_box(&id(1)).unwrap().state, BoxState::Created);
    // Renaming onto another box's name is refused and changes nothing.
    let err = db
        .update_box(&id(1), |r| {
            r.name = "db".into();
            r.state = BoxState::Stopped;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::NameInUse(n, other) if n == "db" && other == id(2)));
    assert_eq!(db.get_box(&id(1)).unwrap().state, BoxState::Created);
    // The id is not the closure's to change.
    assert!(
        db.update_box(&id(1), |r| {
            r.id = id(9);
            Ok(())
        })
        .is_err()
    );
    assert!(matches!(
        db.update_box(&id(7), |_| Ok(())),
        Err(Error::NoSuchBox(_))
    ));
    // The connection is still usable after the rollbacks.
    db.update_box(&id(1), |r| {
        r.reason = Some("ok".into());
        Ok(())
    })
    .unwrap();
}

#[test]
fn concurrent_updates_lose_nothing() {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    StateDb::open(&path)
        .unwrap()
        .insert_box(&record(&id(1), "web", 1))
        .unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let db = StateDb::open(&path).unwrap();
                for _ in 0..ROUNDS {
                    db.update_box(&id(1), |r| {
                        r.exec_count += 1;
                        Ok(())
                    })
                    .unwrap();
                    db.add_exec_stats(&id(1), 1, 10).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let rec = StateDb::open(&path).unwrap().get_box(&id(1)).unwrap();
    assert_eq!(rec.exec_count, 2 * THREADS * ROUNDS);
    assert_eq!(rec.bytes_streamed, 10 * THREADS * ROUNDS);
}

#[test]
fn remove_forgets_and_a_missing_box_is_no_such_box() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    db.remove_box(&id(1)).unwrap();
    assert!(matches!(db.get_box("web"), Err(Error::NoSuchBox(_))));
    assert!(matches!(db.remove_box(&id(1)), Err(Error::NoSuchBox(_))));
    // The name is free again.
    db.insert_box(&record(&id(2), "web", 2)).unwrap();
}

#[test]
fn exec_stats_add_up_and_saturate() {
    let (_dir, _path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    db.add_exec_stats(&id(1), 2, 100).unwrap();
    db.add_exec_stats(&id(1), 1, 50).unwrap();
    let rec = db.get_box(&id(1)).unwrap();
    assert_eq!((rec.exec_count, rec.bytes_streamed), (3, 150));
    db.add_exec_stats(&id(1), u64::MAX, u64::MAX).unwrap();
    db.add_exec_stats(&id(1), 5, 5).unwrap();
    let rec = db.get_box(&id(1)).unwrap();
    assert_eq!(rec.exec_count, i64::MAX as u64);
    assert_eq!(rec.bytes_streamed, i64::MAX as u64);
    assert!(matches!(
        db.add_exec_stats(&id(2), 1, 1),
        Err(Error::NoSuchBox(_))
    ));
}

#[test]
fn boxes_using_an_image_are_listed() {
    let (_dir, _path, db) = db();
    let mut a = record(&id(1), "a", 1);
    a.image_digest = "sha256:one".into();
    let mut b = record(&id(2), "b", 2);
    b.image_digest = "sha256:two".into();
    let mut c = record(&id(3), "c", 3);
    c.image_digest = "sha256:one".into();
    for r in [&a, &b, &c] {
        db.insert_box(r).unwrap();
    }
    assert_eq!(db.boxes_using_image("sha256:one").unwrap(), [id(1), id(3)]);
    assert!(db.boxes_using_image("sha256:none").unwrap().is_empty());
}

fn disk(digest: &str, at: u64) -> BaseDiskRecord {
    BaseDiskRecord {
        digest: digest.into(),
        image_name: "alpine".into(),
        path: PathBuf::from(format!("/home/disks/{digest}.ext4")),
        size: 64 << 20,
        created_at_ms: at,
    }
}

#[test]
fn base_disk_records_upsert_list_and_remove() {
    let (_dir, _path, db) = db();
    assert_eq!(db.base_disk("sha256:a").unwrap(), None);
    db.put_base_disk(&disk("sha256:b", 2)).unwrap();
    db.put_base_disk(&disk("sha256:a", 1)).unwrap();
    let mut newer = disk("sha256:b", 3);
    newer.size = 1;
    newer.path = PathBuf::from(std::ffi::OsString::from_vec(b"/not/utf8/\xff".to_vec()));
    db.put_base_disk(&newer).unwrap();
    assert_eq!(db.base_disk("sha256:b").unwrap(), Some(newer.clone()));
    let all = db.list_base_disks().unwrap();
    assert_eq!(all, [disk("sha256:a", 1), newer]);
    db.remove_base_disk("sha256:a").unwrap();
    db.remove_base_disk("sha256:a").unwrap();
    assert_eq!(db.list_base_disks().unwrap().len(), 1);
}

#[test]
fn reopening_keeps_everything() {
    let (_dir, path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    db.put_base_disk(&disk("sha256:a", 1)).unwrap();
    drop(db);
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.get_box("web").unwrap(), record(&id(1), "web", 1));
    assert_eq!(db.list_base_disks().unwrap(), [disk("sha256:a", 1)]);
}

fn set_version(path: &Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    let (_dir, path, db) = db();
    drop(db);
    set_version(&path, schema::CURRENT_VERSION + 1);
    let err = StateDb::open(&path).unwrap_err();
    assert!(matches!(err, Error::State { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer boxlite"), "{msg}");
}

#[test]
fn a_damaged_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = StateDb::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
}

#[test]
fn a_damaged_row_is_an_error_not_a_panic() {
    let (_dir, path, db) = db();
    db.insert_box(&record(&id(1), "web", 1)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE boxes SET state = 'exploded'", [])
        .unwrap();
    let err = db.get_box("web").unwrap_err().to_string();
    assert!(err.contains("exploded"), "{err}");
    conn.execute("UPDATE boxes SET state = 'running', options = '{'", [])
        .unwrap();
    assert!(db.list_boxes().is_err());
}

#[test]
fn an_incomplete_box_holds_its_name_and_is_seen_by_nothing_else() {
    let (_dir, _path, db) = db();
    let rec = record(&id(1), "half", 1);
    db.insert_incomplete_box(&rec).unwrap();
    assert!(matches!(db.get_box("half"), Err(Error::NoSuchBox(_))));
    assert!(matches!(db.get_box(&id(1)), Err(Error::NoSuchBox(_))));
    assert!(matches!(db.get_box("0101"), Err(Error::NoSuchBox(_))));
    assert!(db.list_boxes().unwrap().is_empty());
    assert!(db.boxes_using_image("sha256:aaaa").unwrap().is_empty());
    assert!(matches!(db.mark_stopping(&id(1)), Err(Error::NoSuchBox(_))));
    // Its name and id are taken all the same.
    match db.insert_box(&record(&id(2), "half", 2)) {
        Err(Error::NameInUse(name, owner)) => assert_eq!((name.as_str(), owner), ("half", id(1))),
        other => panic!("{other:?}"),
    }
    assert!(
        db.insert_incomplete_box(&record(&id(1), "other", 2))
            .is_err()
    );
    assert_eq!(db.box_completeness(&id(1)).unwrap(), Some(true));
    assert_eq!(db.all_box_ids().unwrap(), [(id(1), true)]);

    db.complete_box(&id(1)).unwrap();
    assert_eq!(db.get_box("half").unwrap(), rec);
    assert_eq!(db.box_completeness(&id(1)).unwrap(), Some(false));
    // A complete box is never removed as an incomplete one, nor completed twice.
    assert!(!db.remove_incomplete_box(&id(1)).unwrap());
    assert!(matches!(db.complete_box(&id(1)), Err(Error::NoSuchBox(_))));

    db.insert_incomplete_box(&record(&id(3), "dead", 3))
        .unwrap();
    assert!(db.remove_incomplete_box(&id(3)).unwrap());
    assert_eq!(db.box_completeness(&id(3)).unwrap(), None);
    db.insert_box(&record(&id(4), "dead", 4)).unwrap();
}

#[test]
fn a_version_1_database_is_migrated_with_its_boxes_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(schema::MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "INSERT INTO boxes (id, name, image, image_digest, options, state, created_at_ms) \
             VALUES (?1, 'old', 'alpine', 'sha256:aaaa', ?2, 'stopped', 5)",
            rusqlite::params![
                id(7),
                serde_json::to_string(&BoxOptions::new("alpine")).unwrap()
            ],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let db = StateDb::open(&path).unwrap();
    let version: i64 = db
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::CURRENT_VERSION);
    assert_eq!(db.get_box("old").unwrap().state, BoxState::Stopped);
    assert_eq!(db.all_box_ids().unwrap(), [(id(7), false)]);
}

#[test]
fn now_is_after_2020() {
    assert!(now_ms() > 1_577_836_800_000);
}
