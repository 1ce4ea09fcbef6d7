//! The http data path: the reverse proxy that pins each client to a backend with its cookie.
//!
//! [`server`] accepts and runs hyper per connection; [`phases`] is one request's life (route, then
//! [`pin`], [`forward`] over [`upstream`] connections with the [`headers`] rewritten, respond);
//! [`rescue`] maps every error to its status. [`handoff`] and [`upgrade`] hand pinned and upgraded
//! connections to [`crate::splice`].

pub mod body;
pub mod client_io;
pub mod conn;
pub mod forward;
pub mod h1;
pub mod handoff;
pub mod headers;
pub mod phases;
pub mod pin;
pub mod rescue;
pub mod server;
pub mod upgrade;
pub mod upstream;

pub use self::{
    conn::{Proxy, Settings},
    server::serve,
};
