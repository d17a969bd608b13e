//! tokdeck: a terminal deck for `OAuth2` tokens.
//!
//! Where things are, from the edges in:
//!
//! | layer | modules |
//! |---|---|
//! | the two executables | [`front`] (the small `tokdeck`, answered by an agent when one runs), [`cli`] (the command line), [`commands`] (one module per subcommand), [`exit`], [`output`], [`prompt`] |
//! | the full-screen app | [`tui`]: state and pure transitions, popups, views |
//! | the agent | [`agent`]: the socket, the keeper, metrics, publishing; [`team`] (who keeps a shared vault) |
//! | tokens | [`usable`] (a usable access token, for `token`, `exec`, `api` and the agent), [`worker`] (the async OAuth worker: commands in, events out), [`oauth`] (pure OAuth), [`http`], [`claims`], [`pacing`], [`health`] |
//! | the store | [`vault`]: the model, age, the file and OpenBao backends, the lease and the locks; [`openbao`] (its CLI's conventions), [`audit`] |
//! | what commands show | [`report`] (rows, tables, JSON), [`filter`], [`display`], [`duration`], [`qr`] |
//! | settings and the machine | [`config`], [`context`], [`runtime`], [`logging`], [`platform`], [`clock`] |

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
