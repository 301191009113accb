//! The process's log: human text or one JSON object a line, on standard
//! error, filtered by an environment variable. Nothing at info level or
//! above names a person or quotes a section (tested over a whole demo).

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line (`timestamp`, `level`, `target`, `fields`),
    /// for journald, Loki, Elasticsearch and the like.
    Json,
}

/// Installs the process's logger: `format` on standard error, filtered by
/// the directives in the environment variable `env` (`RUST_LOG` syntax),
/// else by `default_filter`.
pub fn init(format: LogFormat, env: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
