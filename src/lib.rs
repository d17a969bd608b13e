//! tokdeck: a terminal deck for `OAuth2` tokens.

pub mod agent;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod display;
pub mod duration;
pub mod exit;
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
pub mod tui;
pub mod usable;
pub mod vault;
pub mod worker;
