use super::*;

fn at(text: &str) -> DateTime<Utc> {
    clock::parse(text).unwrap()
}

const KEY: KeyRef = KeyRef {
    id: "key_1",
    name: "prod",
    team: "blue",
};

fn kinds(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|alert| alert.kind.as_str()).collect()
}

#[test]
fn every_kind_reads_back_from_its_name() {
    for kind in AlertKind::SUBSCRIBABLE {
        assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(
        AlertKind::parse("webhook.test"),
        Some(AlertKind::WebhookTest)
    );
    assert_eq!(AlertKind::parse("quota"), None);
}

#[test]
fn quota_alerts_fire_at_the_threshold_and_at_the_quota_once_per_period() {
    let now = at("2026-12-07T10:30:00Z");
    let settings = AlertSettings::default();
    let quotas = Quotas {
        per_day: Some(10),
        per_month: Some(1_000),
    };
    let usage = |today, this_month| QuotaUsage { today, this_month };
    let owner = QuotaOwner::Key(KEY);
    assert!(quota_alerts(owner, quotas, usage(7, 7), &settings, now).is_empty());
    let at_80 = quota_alerts(owner, quotas, usage(8, 8), &settings, now);
    assert_eq!(kinds(&at_80), ["quota.threshold"]);
    assert_eq!(
        at_80[0].occurrence,
        format!(
            "quota.threshold/key/key_1/day/{}/10",
            at("2026-12-07T00:00:00Z").timestamp()
        )
    );
    assert_eq!(at_80[0].team.as_deref(), Some("blue"));
    assert_eq!(at_80[0].data["used"], 8);
    assert_eq!(at_80[0].data["quota"], 10);
    assert_eq!(at_80[0].data["period"], "day");
    assert_eq!(at_80[0].data["resets_at"], "2026-12-08T00:00:00Z");
    let full = quota_alerts(owner, quotas, usage(12, 800), &settings, now);
    assert_eq!(
        kinds(&full),
        ["quota.threshold", "quota.exceeded", "quota.threshold"]
    );
    assert_eq!(full[2].data["period"], "month");
    // The next day is a new occurrence of the day's alerts, the same one of the month's.
    let tomorrow = quota_alerts(
        owner,
        quotas,
        usage(12, 800),
        &settings,
        at("2026-12-08T01:00:00Z"),
    );
    assert_ne!(tomorrow[0].occurrence, full[0].occurrence);
    assert_eq!(tomorrow[2].occurrence, full[2].occurrence);
    // A quota raised within the day alerts again at its new value.
    let raised = Quotas {
        per_day: Some(20),
        per_month: Some(1_000),
    };
    let again = quota_alerts(owner, raised, usage(16, 800), &settings, now);
    assert_ne!(again[0].occurrence, at_80[0].occurrence);
}

#[test]
fn the_threshold_rounds_up_and_a_team_owns_its_alerts() {
    assert_eq!(threshold_of(3, 80), 3);
    assert_eq!(threshold_of(1, 1), 1);
    assert_eq!(
        threshold_of(u64::MAX, 99),
        (u128::from(u64::MAX) * 99).div_ceil(100) as u64
    );
    let settings = AlertSettings {
        quota_percent: 50,
        refusals: 1,
    };
    let quotas = Quotas {
        per_day: None,
        per_month: Some(4),
    };
    let alerts = quota_alerts(
        QuotaOwner::Team { name: "blue" },
        quotas,
        QuotaUsage {
            today: 0,
            this_month: 2,
        },
        &settings,
        at("2026-12-07T10:30:00Z"),
    );
    assert_eq!(kinds(&alerts), ["quota.threshold"]);
    assert_eq!(alerts[0].data["subject"], "team");
    assert!(alerts[0].occurrence.contains("/team/blue/month/"));
}

#[test]
fn expiry_alerts_take_the_nearest_notice_and_stop_a_day_after_expiry() {
    let now = at("2026-12-07T10:00:00Z");
    let alert = |expires: &str| expiry_alert(KEY, at(expires), now);
    assert!(alert("2026-12-15T10:00:01Z").is_none());
    let week = alert("2026-12-14T10:00:00Z").unwrap();
    assert_eq!(week.kind, AlertKind::KeyExpiring);
    assert_eq!(week.data["days_before"], 7);
    let day = alert("2026-12-07T22:00:00Z").unwrap();
    assert_eq!(day.data["days_before"], 1);
    assert!(day.occurrence.contains("/1d/"));
    let expired = alert("2026-12-07T09:00:00Z").unwrap();
    assert_eq!(expired.kind, AlertKind::KeyExpired);
    assert!(alert("2026-12-06T09:59:59Z").is_none());
    // Moving the expiry is a new occurrence.
    assert_ne!(
        alert("2026-12-14T10:00:00Z").unwrap().occurrence,
        alert("2026-12-13T10:00:00Z").unwrap().occurrence
    );
}

#[test]
fn refusals_alert_above_the_threshold_once_per_window() {
    let settings = AlertSettings {
        quota_percent: 80,
        refusals: 10,
    };
    let now = at("2026-12-07T10:01:00Z");
    assert!(refusal_alert(KEY, 10, &settings, now).is_none());
    let alert = refusal_alert(KEY, 11, &settings, now).unwrap();
    assert_eq!(alert.data["refused"], 11);
    let later = refusal_alert(KEY, 50, &settings, at("2026-12-07T10:04:59Z")).unwrap();
    assert_eq!(alert.occurrence, later.occurrence);
    let next = refusal_alert(KEY, 50, &settings, at("2026-12-07T10:05:00Z")).unwrap();
    assert_ne!(alert.occurrence, next.occurrence);
}

#[test]
fn lifecycle_alerts_carry_ids_and_extra_fields_but_no_team_when_there_is_none() {
    let lone = KeyRef {
        id: "key_2",
        name: "dev",
        team: "",
    };
    let alert = key_alert(
        AlertKind::KeyRotated,
        lone,
        "key_3",
        json!({"successor_id": "key_3"}),
    );
    assert_eq!(alert.team, None);
    assert_eq!(alert.data["team"], Value::Null);
    assert_eq!(alert.data["successor_id"], "key_3");
    assert_eq!(alert.occurrence, "key.rotated/key_2/key_3");
}
