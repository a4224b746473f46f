//! `keygate-control proxies …` and `keygate-control enrollment-tokens …`.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ProxiesArgs {
    #[command(subcommand)]
    pub command: ProxiesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProxiesCommand {
    /// List the fleet: every proxy with its state, snapshot lag and last posts (viewer role).
    List,
    /// Show one proxy.
    Show {
        /// The proxy's id (prx_…).
        id: String,
    },
    /// Issue a credential for a proxy or a deployment (admin role); it is printed once.
    Issue {
        /// The proxy's name (what it is listed as).
        name: String,
        /// A label, NAME=VALUE (repeatable).
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
    },
    /// Revoke a proxy: its next call is refused and its name cannot enroll again (admin role).
    Revoke {
        /// The proxy's id (prx_…).
        id: String,
    },
    /// List what a proxy reported, per key and hour.
    Reports {
        /// The proxy's id (prx_…).
        id: String,
    },
    /// Take what a proxy reported back out of the usage counts (admin role).
    DiscardReports {
        /// The proxy's id (prx_…).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct EnrollmentTokensArgs {
    #[command(subcommand)]
    pub command: EnrollmentTokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentTokensCommand {
    /// List the enrollment tokens (admin role).
    List,
    /// Create an enrollment token; it is printed once (admin role).
    Create {
        /// What it is for (a mesh, a cluster).
        name: String,
        /// When it stops working (RFC 3339).
        #[arg(long, value_name = "INSTANT")]
        expires_at: Option<String>,
    },
    /// Revoke an enrollment token: no proxy enrolls with it any more (admin role).
    Revoke {
        /// The token's id (enr_…).
        id: String,
    },
}
