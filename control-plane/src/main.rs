//! `portcullis`: the control-plane binary. Parses the command line, sets up logging, loads the
//! config and hands over to the library; it holds no logic of its own. Failures print one line
//! to stderr and exit non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_control_plane::{app, cli, config::Config};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Portcullis control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public (OAuth2) and admin listeners; applies migrations first.
    Serve {
        /// YAML config file; `PORTCULLIS_*` environment variables override it.
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Development only: the admin API accepts requests without an API key. Deliberately
        /// a flag alone (no config key, no environment variable), so it is never on by accident.
        #[arg(long)]
        dev: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Work with access rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Manage admin API keys in the database (works while no key exists yet).
    Keys {
        #[arg(long, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once on stdout and cannot be shown again.
    Create {
        /// What the key is for, e.g. `ci`.
        #[arg(long)]
        name: String,
        /// Comma-separated: `admin`, or `<resource>:read|write` with resource one of clients,
        /// identities, sessions, rules, keys, courier, tokens, api-keys.
        #[arg(long, value_name = "SCOPE[,SCOPE...]")]
        scopes: String,
    },
    /// List keys (never the keys themselves), revoked ones included.
    List,
    /// Revoke a key by id.
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files (or directories of them) offline, as one set; exit 1 on errors.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Ask a running control plane why a request would be allowed (exit 0) or denied (exit 2).
    Explain {
        #[arg(long, default_value = "GET")]
        method: String,
        /// The absolute URL of the request, e.g. https://api.example.com/items?x=1
        #[arg(long)]
        url: String,
        /// A request header, `Name: value`; repeatable.
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        #[arg(long, env = "PORTCULLIS_ADMIN_URL", default_value = "http://127.0.0.1:4445")]
        admin_url: String,
        /// An admin API key with `rules:read` (not needed when the server runs with --dev).
        #[arg(long, env = "PORTCULLIS_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Rules { command: RulesCommand::Check { files } } = &cli.command {
        return cli::rules_check(files);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, dev } => {
                let mut config = Config::load(config.as_deref())?;
                config.dev = dev;
                app::serve(config, app::shutdown_signal()).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Migrate { config } => {
                let config = Config::load(config.as_deref())?;
                app::migrate(&config).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Rules { command: RulesCommand::Explain { method, url, headers, admin_url, api_key } } => {
                Ok(cli::rules_explain(&admin_url, api_key.as_deref(), &method, &url, &headers).await)
            }
            Command::Keys { config, command } => {
                let config = Config::load(config.as_deref())?;
                match command {
                    KeysCommand::Create { name, scopes } => cli::keys_create(&config, &name, &scopes).await,
                    KeysCommand::List => cli::keys_list(&config).await,
                    KeysCommand::Revoke { id } => cli::keys_revoke(&config, &id).await,
                }
            }
            Command::Rules { command: RulesCommand::Check { .. } } => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}
