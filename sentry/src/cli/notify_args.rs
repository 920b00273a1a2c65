//! The alert and event-log flags, shared by `sentry run` and `sentry watch` (flattened into
//! both), and the [`NotifyConfig`] they make.

use std::path::PathBuf;

use clap::Args;

use crate::notify::{EventsLogConfig, NotifyConfig, DEFAULT_PUBLIC_URL};

/// The `--help` section of these flags.
const HEADING: &str = "Alerts and events";

/// Where alerts and events go.
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// Post alerts to this Alertmanager (v2 API), e.g. http://alertmanager:9093; repeatable.
    /// Firing alerts are re-sent every minute and resolved when the run ends.
    #[arg(help_heading = HEADING, long = "alertmanager", value_name = "URL")]
    pub alertmanager: Vec<String>,
    /// POST a JSON event (schema sentry.alert/v1, see docs/alerts.md) to this URL for each
    /// incident, and a `resolved` event when the run ends; repeatable.
    #[arg(help_heading = HEADING, long = "webhook", value_name = "URL")]
    pub webhook: Vec<String>,
    /// Post a message to this Slack incoming webhook for each incident; repeatable.
    #[arg(help_heading = HEADING, long = "slack-webhook", value_name = "URL")]
    pub slack_webhook: Vec<String>,
    /// Append findings, decisions, incidents and run ends to FILE as JSON lines (schema
    /// sentry.event/v1, see docs/events-log.md), for log shippers.
    #[arg(help_heading = HEADING, long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Rotate the events log before it grows past SIZE (e.g. 64M, 1G).
    #[arg(help_heading = HEADING, long, value_name = "SIZE", default_value = "64M", value_parser = super::run::parse_size)]
    pub events_log_max_bytes: u64,
    /// Rotated events logs to keep (FILE.1 … FILE.N).
    #[arg(help_heading = HEADING, long, value_name = "N", default_value_t = 5)]
    pub events_log_keep: u32,
    /// The dashboard's address as receivers should link to it.
    #[arg(help_heading = HEADING, long, value_name = "URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,
}

impl NotifyArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> NotifyConfig {
        NotifyConfig {
            alertmanager: self.alertmanager.clone(),
            webhooks: self.webhook.clone(),
            slack: self.slack_webhook.clone(),
            events_log: self.events_log.as_ref().map(|path| EventsLogConfig {
                path: path.clone(),
                max_bytes: self.events_log_max_bytes,
                keep: self.events_log_keep,
            }),
            public_url: self.public_url.clone(),
            ..NotifyConfig::default()
        }
    }

    /// The configuration, or `None` when no receiver or log is given (nothing to start).
    pub fn enabled_config(&self) -> Option<NotifyConfig> {
        Some(self.config()).filter(NotifyConfig::is_enabled)
    }
}
