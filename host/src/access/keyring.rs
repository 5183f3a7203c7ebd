//! The node's keyring: every active API key's hash and record in memory, so checking a key
//! never waits on the database. Keys are created and revoked by other processes (the
//! `keys` CLI); the keyring asks SQLite's `data_version` before each lookup (a read of the
//! WAL index, microseconds, never blocking: busy timeout 0) and reloads when another
//! connection committed. If the database is locked or broken the last known keys are used.
//! Use counts are kept in memory and written in one transaction by [`Keyring::flush`].

use crate::store::{
    keys::{hash_key, KeyRecord},
    Store, StoreError,
};
use rusqlite::{Connection, OpenFlags};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

struct Cache {
    /// A connection used only to ask whether the file changed.
    probe: Option<Connection>,
    /// `data_version` when the keys were last loaded.
    version: Option<i64>,
    keys: HashMap<String, Arc<KeyRecord>>,
    /// When a failed refresh was last logged (so a locked database logs once a minute).
    warned: Option<Instant>,
}

/// Active keys by hash, refreshed when the database changes.
pub struct Keyring {
    path: PathBuf,
    cache: Mutex<Cache>,
    usage: Mutex<HashMap<i64, u64>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("path", &self.path).finish()
    }
}

fn open_probe(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    Ok(conn)
}

impl Keyring {
    /// The keyring of the database at `path` (which must exist and be migrated), loaded now.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let ring = Self {
            path: path.to_path_buf(),
            cache: Mutex::new(Cache {
                probe: None,
                version: None,
                keys: HashMap::new(),
                warned: None,
            }),
            usage: Mutex::new(HashMap::new()),
        };
        {
            let mut cache = ring.cache.lock().unwrap_or_else(|p| p.into_inner());
            ring.refresh(&mut cache)?;
        }
        Ok(ring)
    }

    /// Reloads the keys if another connection changed the database.
    fn refresh(&self, cache: &mut Cache) -> Result<(), StoreError> {
        let wrap = |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        };
        if cache.probe.is_none() {
            cache.probe = Some(open_probe(&self.path).map_err(wrap)?);
        }
        let Some(probe) = cache.probe.as_ref() else {
            return Ok(());
        };
        let version: i64 = probe
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .map_err(wrap)?;
        if cache.version == Some(version) {
            return Ok(());
        }
        let keys = Store::active_keys_on(probe, &self.path)?;
        cache.keys = keys
            .into_iter()
            .map(|(hash, record)| (hash, Arc::new(record)))
            .collect();
        cache.version = Some(version);
        Ok(())
    }

    /// The active key whose text is `key`, if any; its use is counted.
    pub fn lookup(&self, key: &str) -> Option<Arc<KeyRecord>> {
        let hash = hash_key(key);
        let found = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = self.refresh(&mut cache) {
                // Keep serving with the keys last read; drop the connection so the next
                // request opens a fresh one.
                cache.probe = None;
                if cache
                    .warned
                    .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(60))
                {
                    cache.warned = Some(Instant::now());
                    tracing::warn!(error = %e, "cannot re-read the API keys; using the keys read last");
                }
            }
            cache.keys.get(&hash).cloned()
        };
        if let Some(record) = &found {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            *usage.entry(record.id).or_default() += 1;
        }
        found
    }

    /// Whether any key is active.
    pub fn any(&self) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        !cache.keys.is_empty()
    }

    /// Writes the counted uses to `store` in one transaction; on failure they are kept for
    /// the next flush. Blocking.
    pub fn flush(&self, store: &mut Store) -> Result<usize, StoreError> {
        let pending: Vec<(i64, u64)> = {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            usage.drain().collect()
        };
        if pending.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.add_key_usage(&pending) {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            for (id, n) in pending {
                *usage.entry(id).or_default() += n;
            }
            return Err(e);
        }
        Ok(pending.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_another_connection_count_at_once_and_uses_are_batched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let mut cli = Store::open(&path).unwrap();
        let ring = Keyring::open(&path).unwrap();
        assert!(!ring.any());
        let (key, _) = cli.create_key("a", &[], &[], 0).unwrap();
        // Another connection (the CLI) created it: the next lookup sees it.
        let found = ring.lookup(&key).unwrap();
        assert_eq!(found.name, "a");
        assert!(ring.lookup("cyx-unknown").is_none());
        ring.lookup(&key).unwrap();
        // Uses are only in memory until flushed.
        assert_eq!(cli.list_keys().unwrap()[0].request_count, 0);
        assert_eq!(ring.flush(&mut cli).unwrap(), 1);
        assert_eq!(cli.list_keys().unwrap()[0].request_count, 2);
        cli.revoke_key("a").unwrap();
        assert!(
            ring.lookup(&key).is_none(),
            "revocation counts on the next lookup"
        );
    }

    #[test]
    fn a_locked_database_neither_blocks_nor_forgets_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let cli = Store::open(&path).unwrap();
        let (key, _) = cli.create_key("a", &[], &[], 0).unwrap();
        let ring = Keyring::open(&path).unwrap();
        // Another process holds the write lock in the middle of a transaction (a key
        // lookup used to write here and waited up to the busy timeout, then failed).
        let locker = Connection::open(&path).unwrap();
        locker
            .execute_batch("BEGIN IMMEDIATE; UPDATE api_keys SET rpm = 5;")
            .unwrap();
        let started = Instant::now();
        assert_eq!(ring.lookup(&key).unwrap().rpm, 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        locker.execute_batch("COMMIT").unwrap();
        drop(locker);
        // Once the lock is gone the change is read.
        assert_eq!(ring.lookup(&key).unwrap().rpm, 5);
    }
}
