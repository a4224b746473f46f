//! The public keys GitHub signs secret scanning reports with, from the file `serve
//! --secret-scanning-keys` names (GitHub's own document shape, so an operator can save
//! `https://api.github.com/meta/public_keys/secret_scanning` as it is). The file is re-read
//! when its content changes (checked at most once a second, when a report arrives): a rotated
//! key is picked up without a restart. A new content that does not parse, or a file that cannot
//! be read, is logged once and the last good keys keep verifying.

use crate::domain::secret_scanning::{parse_keys, ScanningKeys};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a read of the file is trusted before the next report checks it again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest keys file read (GitHub's document is about 1 KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

struct Loaded {
    keys: Arc<ScanningKeys>,
    content: [u8; 32],
    /// A content refused already, so it is logged once.
    refused: Option<[u8; 32]>,
    /// The last read error, so it is logged once (until the file reads again).
    read_error: Option<String>,
    checked_at: Instant,
}

pub struct ScanningKeysFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|error| format!("{}: {error}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {size} bytes, more than a keys document ({MAX_FILE_BYTES})",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))
}

impl ScanningKeysFile {
    /// Reads the file; an error here stops the service from starting.
    pub fn load(path: PathBuf) -> Result<Self, String> {
        let content = read(&path)?;
        let keys = parse_keys(&content).map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(ScanningKeysFile {
            loaded: Mutex::new(Loaded {
                keys: Arc::new(keys),
                content: Sha256::digest(&content).into(),
                refused: None,
                read_error: None,
                checked_at: Instant::now(),
            }),
            path,
        })
    }

    /// What the file holds now, for the start-up log; a file of no keys is worth a warning.
    pub fn summary(&self) -> String {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.keys.is_empty() {
            return "no public keys: every report will be refused".into();
        }
        loaded.keys.summary()
    }

    /// The keys to verify with now: the file's, re-read if its content changed since the last
    /// check (at most once per `RECHECK_INTERVAL`).
    pub fn current(&self) -> Arc<ScanningKeys> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked_at.elapsed() < RECHECK_INTERVAL {
            return Arc::clone(&loaded.keys);
        }
        loaded.checked_at = Instant::now();
        let content = match read(&self.path) {
            Ok(content) => {
                loaded.read_error = None;
                content
            }
            Err(error) => {
                if loaded.read_error.as_ref() != Some(&error) {
                    eprintln!("secret scanning keys: {error}; the keys read before stay in use");
                    loaded.read_error = Some(error);
                }
                return Arc::clone(&loaded.keys);
            }
        };
        let digest: [u8; 32] = Sha256::digest(&content).into();
        if digest == loaded.content || loaded.refused == Some(digest) {
            return Arc::clone(&loaded.keys);
        }
        match parse_keys(&content) {
            Ok(keys) => {
                println!(
                    "secret scanning keys: {} re-read: {}",
                    self.path.display(),
                    keys.summary()
                );
                loaded.keys = Arc::new(keys);
                loaded.content = digest;
                loaded.refused = None;
            }
            Err(error) => {
                eprintln!(
                    "secret scanning keys: {}: {error}; the keys read before stay in use",
                    self.path.display()
                );
                loaded.refused = Some(digest);
            }
        }
        Arc::clone(&loaded.keys)
    }
}
