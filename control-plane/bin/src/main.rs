//! `portcullis`: the control-plane binary. Parses the command line, sets up logging, loads the
//! config and hands `serve` and `migrate` over to the library (`portcullis-control-plane`); the
//! other commands are thin clients in [`cli`]. It holds no HTTP handler or domain rule of its own.
//! Failures print one line to stderr and exit non-zero.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![deny(clippy::allow_attributes, clippy::allow_attributes_without_reason)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_control_plane::{app, config::Config};

mod cli;

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
    /// Manage OAuth2 clients through a running control plane's admin API.
    Clients {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Get or inspect tokens from a running control plane.
    Token {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage admin API keys in the database (works while no key exists yet).
    Keys {
        #[arg(long, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(clap::Args)]
struct RemoteArgs {
    #[arg(long, env = "PORTCULLIS_ADMIN_URL", default_value = "http://127.0.0.1:4445", global = true)]
    admin_url: String,
    #[arg(long, env = "PORTCULLIS_PUBLIC_URL", default_value = "http://127.0.0.1:4444", global = true)]
    public_url: String,
    /// An admin API key (not needed when the server runs with --dev).
    #[arg(long, env = "PORTCULLIS_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// `table` for people, `json` as the server answered.
    #[arg(long, value_enum, default_value = "table", global = true)]
    format: cli::Format,
}

impl RemoteArgs {
    fn remote(&self) -> cli::Remote {
        cli::Remote {
            admin_url: self.admin_url.clone(),
            public_url: self.public_url.clone(),
            api_key: self.api_key.clone(),
        }
    }
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a client (flags as `hydra create oauth2-client`); a generated secret is shown once.
    Create(cli::NewClient),
    /// List clients (up to 1000).
    List,
    /// Show one client.
    Get { id: String },
    /// Delete a client (and its tokens).
    Delete { id: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Perform the client_credentials grant and print the access token.
    ClientCredentials {
        #[arg(long, env = "PORTCULLIS_CLIENT_ID")]
        client_id: String,
        #[arg(long, env = "PORTCULLIS_CLIENT_SECRET", hide_env_values = true)]
        client_secret: String,
        #[arg(long)]
        scope: Vec<String>,
        #[arg(long)]
        audience: Vec<String>,
    },
    /// Introspect a token; exit 2 when it is not active.
    Introspect { token: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once on stdout and cannot be shown again.
    Create {
        /// What the key is for, e.g. `ci`.
        #[arg(long)]
        name: String,
        /// Comma-separated: `admin`, or `<resource>:read|write` with resource one of clients,
        /// identities, sessions, rules, keys, courier, tokens (introspection, token deletion),
        /// login-consent (the login/consent/logout app: /admin/oauth2/auth/...), api-keys.
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
            Command::Clients { remote, command } => {
                let (r, format) = (remote.remote(), remote.format);
                Ok(match command {
                    ClientsCommand::Create(c) => cli::clients_create(&r, &c, format).await,
                    ClientsCommand::List => cli::clients_list(&r, format).await,
                    ClientsCommand::Get { id } => cli::clients_get(&r, &id, format).await,
                    ClientsCommand::Delete { id } => cli::clients_delete(&r, &id).await,
                })
            }
            Command::Token { remote, command } => {
                let (r, format) = (remote.remote(), remote.format);
                Ok(match command {
                    TokenCommand::ClientCredentials { client_id, client_secret, scope, audience } => {
                        cli::token_client_credentials(&r, &client_id, &client_secret, &scope, &audience, format).await
                    }
                    TokenCommand::Introspect { token } => cli::token_introspect(&r, &token).await,
                })
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
