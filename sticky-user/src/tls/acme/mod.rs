//! ACME (RFC 8555): certificates ordered, kept and renewed in a directory shared by the sticky
//! instances, proven by HTTP-01 or TLS-ALPN-01 answered by whichever instance the CA reaches.
//!
//! # Several instances (one per Swarm manager)
//! The stack file gives every instance the same ACME directory (a volume on shared storage: NFS and
//! the like). In it, one lock file decides who orders: the instance holding an exclusive `flock` on
//! `DIR/lock` is the leader; the others are followers and try to take the lock every
//! [`manager::Settings::lead_retry`], so when the leader's process ends (and the kernel, or the NFS
//! server, drops its lock) one of them takes over. Only the leader creates the account, orders,
//! renews and backs off; nothing is ordered twice, and the CA's rate limits see one client.
//!
//! The CA's validation request reaches whichever manager DNS or the load balancer in front picks,
//! so every instance must answer it: the leader writes each answer into `DIR/challenges/` before
//! telling the CA, every instance reads that directory every [`manager::Settings::sync_every`] into
//! its [`crate::tls::challenge::Challenges`], and the leader waits
//! [`manager::Settings::propagation`] in between. Issued certificates land in `DIR/certs/`, which
//! every instance's reloader polls like any certificate directory.
//!
//! Why a lock file and not a leader chosen from the Swarm's manager list: the directory must be
//! shared anyway (for the answers and the certificates), the lock needs no Docker API and no
//! agreement on the list (which changes during the very events, manager loss and promotion, when
//! takeover matters), and it works the same for one instance, several, or instances outside Swarm.
//! Without shared storage, give ACME to one instance only: validation requests reaching the others
//! would fail.
//!
//! # Files
//! - [`renewal`]: when to order (2/3 of the lifetime, back-off), pure.
//! - [`storage`]: the directory's layout, atomic writes, the lock.
//! - [`issue`]: the request, the issuer seam, the answers an order publishes.
//! - [`client`]: the instant-acme issuer.
//! - [`manager`]: the loop: follow or lead, order what is due, log.

pub mod client;
pub mod issue;
pub mod manager;
pub mod renewal;
pub mod storage;
