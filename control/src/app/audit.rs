//! Reading the audit log (entries are written by the operation that makes each change).

use crate::domain::audit::{AuditEntry, AuditFilter};
use crate::store::audit;
use crate::store::db::Store;
use crate::store::sql::Error;

/// Up to `limit` entries matching `filter`, oldest first, and whether more follow.
pub fn list(
    store: &Store,
    filter: &AuditFilter,
    limit: usize,
) -> Result<(Vec<AuditEntry>, bool), Error> {
    store.read(|tx| audit::list(tx, filter, limit))
}
