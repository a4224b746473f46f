//! Proxy identity with usage counting, on a real (temporary) database.

use crate::app::usage::record_group;
use crate::app::usage::tests::recording::{batch, key_with_daily_quota};
use crate::domain::alerts::AlertSettings;
use crate::domain::audit::Actor;
use crate::domain::clock;
use crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE;
use crate::store::db::temp_store;
use keygate_contract::enrollment::EnrollRequest;

#[test]
fn a_batch_of_a_proxy_revoked_while_it_waited_is_not_counted() {
    let (store, dir) = temp_store("proxies", "revoked_reporter");
    let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
    let hour = now.timestamp() - 15 * 60;
    let key = key_with_daily_quota(&store, 500, now);
    let request = EnrollRequest {
        name: "envoy-r".into(),
        ..EnrollRequest::default()
    };
    let issued = super::issue(&store, &Actor::bootstrap(), &request, now)
        .unwrap()
        .unwrap();
    let mut from_proxy = batch("b-revoked", &key.id, hour, 7);
    from_proxy.reporter = Some(issued.proxy.id.clone());
    let mut shared = batch("b-shared", &key.id, hour, 2);
    shared.reporter = None;
    super::revoke(&store, &Actor::bootstrap(), &issued.proxy.id, now).unwrap();
    let outcomes = record_group(
        &store,
        &[from_proxy, shared],
        now,
        &AlertSettings::default(),
        DEFAULT_MAX_PROXY_RATE,
    )
    .unwrap();
    assert_eq!(outcomes[0].accepted, 0, "the revoked proxy's batch");
    assert_eq!(outcomes[1].accepted, 1, "the rest of the group counts");
    let counted: i64 = store
        .read(|tx| {
            tx.query_row(
                "SELECT COALESCE(SUM(count), 0) FROM usage_hourly WHERE key_id = ?1",
                [key.id.as_str()],
                |row| row.get(0),
            )
        })
        .unwrap();
    assert_eq!(counted, 2);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
