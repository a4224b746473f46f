//! Bulk insertion of random keys, for benchmarks of the snapshot feed at scale.

use crate::domain::keys::mint;

use crate::app::error::LifecycleError;
use crate::domain::clock;
use crate::domain::keys::KeySettings;
use crate::domain::plans::{Environment, LimitOverrides, Plan};
use crate::store::db::{bump_version, Store};
use crate::store::keys;
use crate::store::sql::Error;
use std::io::Write;

/// Inserts `count` new keys in one transaction (one version for all of them), writing each
/// secret as a line to `secrets_out` if given.
pub fn seed(
    store: &Store,
    count: u64,
    environment: Environment,
    mut secrets_out: Option<&mut dyn Write>,
) -> Result<(), SeedError> {
    let now = clock::now();
    let settings = KeySettings {
        name: String::new(),
        environment,
        team: "seed".into(),
        scopes: Vec::new(),
        allowed_ips: Vec::new(),
        expires_at: None,
        plan: Plan::Free,
        limits: LimitOverrides::default(),
    };
    store.write(|tx| {
        let version = bump_version(tx)?;
        for index in 0..count {
            let mut minted = mint(
                &KeySettings {
                    name: format!("seed-{index}"),
                    ..settings.clone()
                },
                now,
                None,
            )
            .map_err(LifecycleError::from)?;
            minted.key.updated_version = version;
            keys::insert(tx, &minted.key)?;
            if let Some(out) = secrets_out.as_mut() {
                writeln!(out, "{}", minted.secret).map_err(SeedError::Io)?;
            }
        }
        Ok::<_, SeedError>(())
    })?;
    // A bulk load leaves the planner's statistics behind: without them PostgreSQL pages a
    // million-key snapshot with a scan and sort per page (300 ms) instead of the index (4 ms).
    store.write(|tx| tx.execute_batch("ANALYZE keys"))?;
    Ok(())
}

#[derive(Debug)]
pub enum SeedError {
    Lifecycle(LifecycleError),
    Io(std::io::Error),
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedError::Lifecycle(error) => write!(f, "{error}"),
            SeedError::Io(error) => write!(f, "writing secrets: {error}"),
        }
    }
}

impl From<LifecycleError> for SeedError {
    fn from(error: LifecycleError) -> Self {
        SeedError::Lifecycle(error)
    }
}

impl From<Error> for SeedError {
    fn from(error: Error) -> Self {
        SeedError::Lifecycle(LifecycleError::Database(error))
    }
}
