//! End-to-end tests for Portcullis: the real `portcullis` binary in front of a real upstream
//! HTTP server, both on ephemeral loopback ports. One test target so the (slow) link happens once.

mod harness;

mod access_log;
mod assertion;
mod attacks;
mod cli;
mod config;
mod flow_api;
mod flow_html;
mod links;
mod proxy;
mod redirects;
mod session;
mod start_over;
