//! `keygate-control teams …` and `keygate-control webhooks …`.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct TeamsArgs {
    #[command(subcommand)]
    pub command: TeamsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// List the teams with their quotas and today's use (a team token: its own).
    List,
    /// Show a team: plan, shared quotas, use, keys and tokens.
    Show {
        /// The team's name.
        name: String,
    },
    /// Create a team (a token of no team, admin role).
    Create {
        /// The team's name (what keys and tokens name in their `team`).
        name: String,
        /// A plan whose daily and monthly quotas the team's keys share.
        #[arg(long)]
        plan: Option<String>,
        /// Allowed requests a UTC day, shared by all the team's keys.
        #[arg(long, value_name = "N")]
        per_day: Option<u64>,
        /// Allowed requests a UTC month, shared by all the team's keys.
        #[arg(long, value_name = "N")]
        per_month: Option<u64>,
    },
    /// Change a team's plan or quotas; its keys are re-marked at once.
    Update {
        /// The team's name.
        name: String,
        /// Put the team on this plan (its quotas become the team's, unless it sets its own).
        #[arg(long, conflicts_with = "clear_plan")]
        plan: Option<String>,
        /// Take the team off its plan.
        #[arg(long)]
        clear_plan: bool,
        /// Allowed requests a UTC day, shared by all the team's keys.
        #[arg(long, value_name = "N", conflicts_with = "clear_per_day")]
        per_day: Option<u64>,
        /// Remove the team's own daily quota (its plan's applies, if any).
        #[arg(long)]
        clear_per_day: bool,
        /// Allowed requests a UTC month, shared by all the team's keys.
        #[arg(long, value_name = "N", conflicts_with = "clear_per_month")]
        per_month: Option<u64>,
        /// Remove the team's own monthly quota.
        #[arg(long)]
        clear_per_month: bool,
    },
    /// Delete a team no live key or token names.
    Delete {
        /// The team's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List the webhook endpoints (a team token: its team's).
    List,
    /// Show one endpoint.
    Show {
        /// The endpoint's id (wh_…).
        id: String,
    },
    /// Create an endpoint; its signing secret is printed once.
    Create {
        /// The endpoint's https URL (no private addresses unless the service allows them).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// An event type to send (repeatable), e.g. quota.threshold, key.revoked.
        #[arg(long = "event", value_name = "TYPE", required = true)]
        events: Vec<String>,
        /// Send only this team's events.
        #[arg(long)]
        team: Option<String>,
        /// What the endpoint is for (at most 256 characters).
        #[arg(long)]
        description: Option<String>,
    },
    /// Change an endpoint.
    Update {
        /// The endpoint's id (wh_…).
        id: String,
        /// A new https URL for the endpoint (`--url` is the service's).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// The event types to send from now on (repeatable; replaces the list).
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Re-enable an endpoint (its failure streak starts over).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop sending to it (pending deliveries are given up).
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint and its delivery log.
    Delete {
        /// The endpoint's id (wh_…).
        id: String,
    },
    /// A new signing secret, printed once; the old one still signs for the grace period.
    RotateSecret {
        /// The endpoint's id (wh_…).
        id: String,
        /// Seconds the old secret keeps signing beside the new one.
        #[arg(long, value_name = "SECONDS", default_value_t = 86400)]
        grace_seconds: u64,
    },
    /// Send a test event to the endpoint.
    Test {
        /// The endpoint's id (wh_…).
        id: String,
    },
    /// The endpoint's delivery log, newest first.
    Deliveries {
        /// The endpoint's id (wh_…).
        id: String,
        /// At most this many (1–500).
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}
