//! tokdeck: a terminal deck for `OAuth2` tokens.
//!
//! Where things are, from the edges in; each layer imports only from itself and those below
//! (`tests/architecture.rs` checks it, and ARCHITECTURE.md draws it):
//!
//! | layer | modules |
//! |---|---|
//! | the executables | [`front`] (the small `tokdeck`, answered by an agent when one runs), [`exit`] |
//! | the subcommands | [`commands`], one module per group of subcommands |
//! | the command line, the runtime | [`cli`] (clap), [`runtime`] (the async runtime and the log file) |
//! | the app and the agent | [`tui`]: state and pure transitions, popups, views; [`agent`]: the socket, the keeper and its schedule, metrics, publishing, and [`agent::ask`] for its clients |
//! | the engine | [`context`] (one run's options, config and clock), [`usable`] (a usable access token, for `token`, `exec`, `api` and the agent), [`report`] (rows, tables, JSON), [`filter`] |
//! | the async OAuth worker | [`worker`]: commands in, events out |
//! | the protocol and the store | [`oauth`] (pure OAuth), [`vault`] (the model, age, the file and OpenBao backends, the lease and the locks), [`openbao`] (its CLI's conventions), [`audit`], [`health`], [`team`] (who keeps a shared vault), [`config`], [`claims`], [`logging`] |
//! | foundations | [`http`], [`clock`], [`display`], [`duration`], [`pacing`], [`platform`], [`qr`], [`output`], [`prompt`] |

pub mod agent;
pub mod audit;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod display;
pub mod duration;
pub mod exit;
pub mod filter;
pub mod front;
pub mod health;
pub mod http;
pub mod logging;
pub mod oauth;
pub mod openbao;
pub mod output;
pub mod pacing;
pub mod platform;
pub mod prompt;
pub mod qr;
pub mod report;
pub mod runtime;
pub mod team;
pub mod tui;
pub mod usable;
pub mod vault;
pub mod worker;
