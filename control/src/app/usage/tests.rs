//! Counting batches, quota marks and retention, on a real (temporary) database.

use super::*;
use crate::app;
use crate::domain::clock;
use crate::domain::keys::{KeySettings, StoredKey};
use crate::domain::plans::{Environment, LimitOverrides, Plan};
use crate::domain::usage_report::{HourlyUsage, ALLOWED_CODE};
use crate::store::db::{current_version, temp_store};
use crate::store::keys;
use crate::store::usage::{allowed_sums, hours, retention_cutoff};
use chrono::Duration;

/// Counts one batch, as a group of one.
fn record(store: &Store, batch: &UsageBatch, now: DateTime<Utc>) -> Result<BatchOutcome, Error> {
    let mut outcomes = record_group(
        store,
        std::slice::from_ref(batch),
        now,
        &crate::domain::alerts::AlertSettings::default(),
        crate::domain::plausibility::DEFAULT_MAX_PROXY_RATE,
    )?;
    Ok(outcomes.pop().expect("one outcome per batch"))
}

/// Allowed requests of `key_id` in hours (and rolled-up days) starting in `[from, to)`.
fn allowed_between(
    tx: &crate::store::sql::Tx,
    key_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> crate::store::sql::Result<u64> {
    let sums = allowed_sums(tx, &[key_id], [(from, to), (from, to)])?;
    Ok(sums.get(key_id).map_or(0, |[total, _]| *total))
}

pub(crate) mod recording {
    use super::*;

    pub(crate) fn key_with_daily_quota(
        store: &Store,
        per_day: u64,
        now: DateTime<Utc>,
    ) -> StoredKey {
        let settings = KeySettings {
            name: "quota".into(),
            environment: Environment::Test,
            team: String::new(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            plan: Plan::Free,
            limits: LimitOverrides {
                per_day: Some(per_day),
                ..LimitOverrides::default()
            },
        };
        app::keys::create(
            store,
            &crate::domain::audit::Actor::bootstrap(),
            &settings,
            now,
        )
        .unwrap()
        .key
    }

    /// `allowed` requests of `key_id` and one of a key never issued, in one batch.
    pub(crate) fn batch(batch_id: &str, key_id: &str, hour_start: i64, allowed: u64) -> UsageBatch {
        UsageBatch {
            reporter: None,
            proxy_id: "p1".into(),
            batch_id: batch_id.into(),
            reports: vec![
                HourlyUsage {
                    events: vec![],
                    ip_registers: vec![],
                    key_id: key_id.into(),
                    hour_start,
                    counts: vec![(ALLOWED_CODE.into(), allowed)],
                },
                HourlyUsage {
                    events: vec![],
                    ip_registers: vec![],
                    key_id: "key_unknown".into(),
                    hour_start,
                    counts: vec![(ALLOWED_CODE.into(), 1)],
                },
            ],
        }
    }

    #[test]
    fn counts_once_marks_once_and_prunes_old_batch_ids() {
        let (store, dir) = temp_store("usage", "record");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let hour = now.timestamp() - 15 * 60;
        let key = key_with_daily_quota(&store, 5, now);
        let first = record(&store, &batch("b1", &key.id, hour, 3), now).unwrap();
        assert_eq!(
            first,
            BatchOutcome {
                accepted: 1,
                unknown_keys: 1,
                duplicate: false,
                refused: Vec::new(),
                reporter_revoked: false,
            }
        );
        assert_eq!(store.read(current_version).unwrap(), 1, "below quota");
        let again = record(&store, &batch("b1", &key.id, hour, 3), now).unwrap();
        assert!(again.duplicate && again.accepted == 1 && again.unknown_keys == 1);
        let day = (
            crate::domain::quota::day_start(now),
            crate::domain::quota::next_day_start(now),
        );
        let today = |store: &Store| {
            store
                .read(|tx| allowed_between(tx, &key.id, day.0, day.1))
                .unwrap()
        };
        assert_eq!(today(&store), 3);
        record(&store, &batch("b2", &key.id, hour, 2), now).unwrap();
        assert_eq!(today(&store), 5);
        let marked = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
        assert_eq!(
            marked.quota_exceeded_until.map(clock::format).as_deref(),
            Some("2026-11-24T00:00:00Z")
        );
        assert_eq!(marked.updated_version, 2);
        record(&store, &batch("b3", &key.id, hour, 1), now).unwrap();
        assert_eq!(store.read(current_version).unwrap(), 2, "mark unchanged");
        let week_later = now + Duration::days(8);
        record(&store, &batch("b4", &key.id, hour, 1), week_later).unwrap();
        let remembered: Vec<String> = store
            .read(|tx| {
                tx.query_map(
                    "SELECT batch_id FROM usage_batches ORDER BY batch_id",
                    (),
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(remembered, ["b4"]);
        assert_eq!(
            store.read(current_version).unwrap(),
            2,
            "a lapsed mark is left as it is"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A batch of many keys reads their quota sums in one pass (`allowed_sums`): each key still
    /// gets its own mark, from its own counts only, and each its own `last_used_at`.
    #[test]
    fn many_keys_in_one_batch_each_get_their_own_mark_and_last_use() {
        let (store, dir) = temp_store("usage", "many");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let hour = now.timestamp() - 15 * 60;
        let keys: Vec<StoredKey> = (0..7)
            .map(|_| key_with_daily_quota(&store, 5, now))
            .collect();
        // Yesterday's 4 count for no key's quota today.
        let yesterday = UsageBatch {
            reporter: None,
            proxy_id: "p1".into(),
            batch_id: "yesterday".into(),
            reports: vec![HourlyUsage {
                events: vec![],
                ip_registers: vec![],
                key_id: keys[0].id.clone(),
                hour_start: hour - 86_400,
                counts: vec![(ALLOWED_CODE.into(), 4)],
            }],
        };
        record(&store, &yesterday, now).unwrap();
        // Key n is reported n requests: keys 5 and 6 reach their quota of 5, the rest do not.
        let batch = UsageBatch {
            reporter: None,
            proxy_id: "p1".into(),
            batch_id: "many".into(),
            reports: keys
                .iter()
                .enumerate()
                .map(|(n, key)| HourlyUsage {
                    events: vec![],
                    ip_registers: vec![],
                    key_id: key.id.clone(),
                    hour_start: hour,
                    counts: vec![
                        (ALLOWED_CODE.into(), n as u64),
                        ("RATE_LIMIT_EXCEEDED".into(), 9),
                    ],
                })
                .collect(),
        };
        assert_eq!(record(&store, &batch, now).unwrap().accepted, 7);
        for (n, key) in keys.iter().enumerate() {
            let stored = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
            let expected = (n >= 5).then(|| "2026-11-24T00:00:00Z".to_string());
            assert_eq!(
                stored.quota_exceeded_until.map(clock::format),
                expected,
                "key {n}"
            );
            let used = if n == 0 { hour - 86_400 } else { hour };
            assert_eq!(
                stored.last_used_at.map(|at| at.timestamp()),
                Some(used),
                "key {n}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

mod retention {
    use super::*;
    use crate::domain::usage_range::{summarize, Granularity};

    fn key_of(store: &Store, team: &str, now: DateTime<Utc>) -> StoredKey {
        let settings = KeySettings {
            name: "usage".into(),
            environment: Environment::Test,
            team: team.into(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            plan: Plan::Free,
            limits: LimitOverrides::default(),
        };
        app::keys::create(
            store,
            &crate::domain::audit::Actor::bootstrap(),
            &settings,
            now,
        )
        .unwrap()
        .key
    }

    fn report(key_id: &str, hour: &str, counts: &[(&str, u64)]) -> HourlyUsage {
        HourlyUsage {
            events: vec![],
            ip_registers: vec![],
            key_id: key_id.into(),
            hour_start: clock::parse(hour).unwrap().timestamp(),
            counts: counts
                .iter()
                .map(|(code, count)| ((*code).to_string(), *count))
                .collect(),
        }
    }

    fn post(store: &Store, batch_id: &str, reports: Vec<HourlyUsage>, now: DateTime<Utc>) {
        let batch = UsageBatch {
            reporter: None,
            proxy_id: "p1".into(),
            batch_id: batch_id.into(),
            reports,
        };
        record(store, &batch, now).unwrap();
    }

    fn last_used(store: &Store, id: &str) -> Option<String> {
        store
            .read(|tx| keys::find(tx, id))
            .unwrap()
            .unwrap()
            .last_used_at
            .map(clock::format)
    }

    #[test]
    fn last_used_is_the_newest_allowed_hour_and_changes_no_version() {
        let (store, dir) = temp_store("usage-r", "last-used");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let key = key_of(&store, "t", now);
        let version = store.read(current_version).unwrap();
        post(
            &store,
            "b1",
            vec![report(
                &key.id,
                "2026-11-23T20:00:00Z",
                &[("RATE_LIMIT_EXCEEDED", 4)],
            )],
            now,
        );
        assert_eq!(last_used(&store, &key.id), None, "denials are not use");
        post(
            &store,
            "b2",
            vec![
                report(&key.id, "2026-11-23T19:00:00Z", &[(ALLOWED_CODE, 1)]),
                report(&key.id, "2026-11-23T20:00:00Z", &[(ALLOWED_CODE, 2)]),
            ],
            now,
        );
        assert_eq!(
            last_used(&store, &key.id).as_deref(),
            Some("2026-11-23T20:00:00Z")
        );
        post(
            &store,
            "b3",
            vec![report(
                &key.id,
                "2026-11-23T18:00:00Z",
                &[(ALLOWED_CODE, 1)],
            )],
            now,
        );
        assert_eq!(
            last_used(&store, &key.id).as_deref(),
            Some("2026-11-23T20:00:00Z"),
            "a late report of an older hour does not move it back"
        );
        assert_eq!(store.read(current_version).unwrap(), version);
        let stored = store.read(|tx| keys::find(tx, &key.id)).unwrap().unwrap();
        assert_eq!(stored.updated_version, key.updated_version);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn event(at: &str, outcome: &str) -> crate::domain::usage_report::KeyEvent {
        crate::domain::usage_report::KeyEvent {
            at_ms: clock::parse(at).unwrap().timestamp_millis(),
            outcome: outcome.into(),
            status: if outcome == "5xx" { 503 } else { 429 },
            method: "GET".into(),
            path: "/v1/models".into(),
            client_ip: Some("192.0.2.1".into()),
            request_id: None,
            proxy_id: "p1".into(),
        }
    }

    #[test]
    fn events_are_read_newest_first_filtered_and_pruned() {
        use crate::domain::events::{EventRange, OutcomeFilter};
        let (store, dir) = temp_store("usage-e", "events");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let key = key_of(&store, "t", now);
        let mut first = report(&key.id, "2026-11-23T21:00:00Z", &[(ALLOWED_CODE, 1)]);
        first.events = vec![
            event("2026-11-23T21:01:00Z", "5xx"),
            event("2026-11-23T21:03:00Z", "RATE_LIMIT_EXCEEDED"),
            event("2026-11-23T21:02:00Z", "none"),
        ];
        let mut old = report(&key.id, "2026-11-10T00:00:00Z", &[(ALLOWED_CODE, 1)]);
        old.events = vec![event("2026-11-10T00:00:01Z", "5xx")];
        post(&store, "e1", vec![first, old], now);
        let read = |outcome, before_ms, limit| {
            let range = EventRange {
                limit,
                outcome,
                before_ms,
            };
            key_events(&store, &Actor::bootstrap(), &key.id, &range)
                .unwrap()
                .into_iter()
                .map(|event| event.outcome)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            read(OutcomeFilter::Any, None, 10),
            ["RATE_LIMIT_EXCEEDED", "none", "5xx", "5xx"]
        );
        assert_eq!(read(OutcomeFilter::Failed, None, 2), ["none", "5xx"]);
        assert_eq!(
            read(OutcomeFilter::Denied, None, 10),
            ["RATE_LIMIT_EXCEEDED"]
        );
        let before = clock::parse("2026-11-23T21:02:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            read(OutcomeFilter::Exactly("5xx".into()), Some(before), 10),
            ["5xx", "5xx"]
        );
        let cutoff = crate::domain::events::retention_cutoff_ms(now, 7);
        let pruned = prune(&store, retention_cutoff(now, 90), now, cutoff, 2).unwrap();
        assert_eq!(pruned.events, 2, "one by age, one beyond the newest two");
        assert_eq!(
            read(OutcomeFilter::Any, None, 10),
            ["RATE_LIMIT_EXCEEDED", "none"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pruning_rolls_old_hours_into_days_with_the_same_sums() {
        let (store, dir) = temp_store("usage-r", "prune");
        let now = clock::parse("2026-11-23T21:15:00Z").unwrap();
        let first = key_of(&store, "t", now);
        let second = key_of(&store, "t", now);
        let other = key_of(&store, "u", now);
        post(
            &store,
            "b1",
            vec![
                report(&first.id, "2026-11-19T01:00:00Z", &[(ALLOWED_CODE, 3)]),
                report(
                    &first.id,
                    "2026-11-19T23:00:00Z",
                    &[(ALLOWED_CODE, 4), ("QUOTA_EXCEEDED", 1)],
                ),
                report(&second.id, "2026-11-19T05:00:00Z", &[(ALLOWED_CODE, 10)]),
                report(&first.id, "2026-11-20T00:00:00Z", &[(ALLOWED_CODE, 5)]),
                report(&first.id, "2026-11-21T12:00:00Z", &[(ALLOWED_CODE, 6)]),
                report(&other.id, "2026-11-19T05:00:00Z", &[(ALLOWED_CODE, 100)]),
                report(&first.id, "2026-11-23T20:00:00Z", &[(ALLOWED_CODE, 7)]),
            ],
            now,
        );
        let from = clock::parse("2026-11-18T00:00:00Z").unwrap().timestamp();
        let to = now.timestamp();
        let read = |store: &Store| {
            store
                .read(|tx| {
                    Ok::<_, Error>((
                        summarize(&hours(tx, &first.id, from, to)?, &[], Granularity::Day),
                        summarize(
                            &usage::team_hours(tx, Some("t"), from, to)?,
                            &[],
                            Granularity::Day,
                        ),
                        summarize(
                            &usage::team_hours(tx, None, from, to)?,
                            &[],
                            Granularity::Day,
                        ),
                        allowed_between(
                            tx,
                            &first.id,
                            clock::parse("2026-11-19T00:00:00Z").unwrap(),
                            clock::parse("2026-11-22T00:00:00Z").unwrap(),
                        )?,
                    ))
                })
                .unwrap()
        };
        let before = read(&store);
        assert_eq!(before.0.totals.total, 26);
        assert_eq!(before.1.totals.allowed, 35);
        assert_eq!(before.2.totals.total, 136);
        assert_eq!(before.3, 18);
        let version = store.read(current_version).unwrap();
        let cutoff = retention_cutoff(now, 3);
        assert_eq!(clock::format(cutoff), "2026-11-20T00:00:00Z");
        let pruned = prune(&store, cutoff, now, 0, 1_000).unwrap();
        assert_eq!(pruned.hours, 5, "every hourly row before the 20th");
        let daily: Vec<(String, i64, String, i64)> = store
            .read(|tx| {
                tx.query_map(
                    "SELECT key_id, day_start, code, count FROM usage_daily ORDER BY 1, 2, 3",
                    (),
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
            })
            .unwrap();
        let day_19 = clock::parse("2026-11-19T00:00:00Z").unwrap().timestamp();
        let mut expected = vec![
            (first.id.clone(), day_19, ALLOWED_CODE.to_string(), 7),
            (first.id.clone(), day_19, "QUOTA_EXCEEDED".to_string(), 1),
            (second.id.clone(), day_19, ALLOWED_CODE.to_string(), 10),
            (other.id.clone(), day_19, ALLOWED_CODE.to_string(), 100),
        ];
        expected.sort();
        assert_eq!(daily, expected);
        let left: i64 = store
            .read(|tx| {
                tx.query_row(
                    "SELECT COUNT(*) FROM usage_hourly WHERE hour_start < ?1",
                    [cutoff.timestamp()],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(
            read(&store),
            before,
            "reads across the cutoff are unchanged"
        );
        assert_eq!(store.read(current_version).unwrap(), version);
        post(
            &store,
            "late",
            vec![report(
                &first.id,
                "2026-11-19T02:00:00Z",
                &[(ALLOWED_CODE, 2)],
            )],
            now,
        );
        prune(&store, cutoff, now, 0, 1_000).unwrap();
        let after_late = read(&store);
        assert_eq!(
            after_late.0.totals.total, 28,
            "a late report is added to its day"
        );
        assert_eq!(after_late.0.buckets[0].counts.allowed, 9);
        assert_eq!(prune(&store, cutoff, now, 0, 1_000).unwrap().hours, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
