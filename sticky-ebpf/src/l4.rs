//! The L4 path (tc): full NAT of TCP flows to services' backends, with a connection table, client
//! affinity and Maglev. Reads top-down, one helper per step, Katran-style:
//!
//! 1. [`lookup_conn`]: the packet's 5-tuple in `CONNS` (established) -> rewrite and forward.
//! 2. [`lookup_half_open`]: in `HALF_OPEN` -> rewrite and forward; the client's first plain ACK
//!    completes the handshake and [`promote`]s the flow to `CONNS` and records the client's affinity.
//! 3. unknown flow: not a service -> pass (or drop a packet to a SNAT port, see `DropNoConn`);
//!    a service -> [`open_flow`]: [`select_backend`] (fresh affinity to a live backend, else Maglev),
//!    a SNAT port from a deterministic candidate list, both directions into `HALF_OPEN`.
//!
//! Verdict convention ([`Action`]): every step returns `Result<_, Action>`; `Err` is the packet's final
//! action and `?` hands it straight up, so each function reads as its happy path. The steps count
//! only events; the packet's one verdict counter is counted by the entry point (`sticky_tc`).
//!
//! Written once over the address family ([`Family`]): IPv4 runs on `CONNS`, `HALF_OPEN`,
//! `AFFINITY`, `SERVICES`, `BACKENDS`; IPv6 on their `*6` twins. `MAGLEV` and `CONFIG` are shared.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
    maps::LruHashMap,
    programs::TcContext,
};
use sticky_common::{
    AffinityKeyOf, AffinityValue, BackendId, BackendValueOf, ConnValueOf, Counter, DatapathConfig, FlowKeyOf,
    ServiceKeyOf, ServiceValue,
    affinity::is_fresh,
    flow::{CONN_F_FIN, CONN_F_FORWARD, IPPROTO_TCP},
    hash::{MAGLEV_SIZE, nat_port},
};

use crate::{
    action::Action,
    family::Family,
    forward,
    maps::{CONFIG, MAGLEV},
    parse::TcpSeg,
    stats::count,
};

/// How many SNAT-port candidates a new flow tries before it gives up (`DropPortExhausted`). Bounded
/// for the verifier; 8 keeps the chance that all are taken below 1e-6 while the range is under 18% full.
const MAX_PORT_PROBES: u32 = 8;

/// Runs the L4 path on a TCP segment: the last step's action (a redirect), or an earlier step's final action.
#[inline(always)]
pub fn process<F: Family>(ctx: &TcContext, pkt: &TcpSeg<F::Addr>) -> Result<Action, Action> {
    if let Some(conn) = lookup_conn::<F>(&pkt.key) {
        return established::<F>(ctx, pkt, conn);
    }
    if let Some(conn) = lookup_half_open::<F>(&pkt.key) {
        return half_open::<F>(ctx, pkt, conn);
    }
    let (cfg, snat) = config::<F>().ok_or(Action::Pass(Counter::PassNotService))?;
    let Some(svc) = lookup_service::<F>(&pkt.key) else {
        // A reply to one of our SNAT ports whose entries are gone (evicted, or reset): the stack has
        // no socket there and would answer with a RST, killing a flow that may still be rebuilt from
        // the client's side. Drop it; the backend retransmits.
        if pkt.key.dst_addr == snat && cfg.is_nat_port(u16::from_be(pkt.key.dst_port)) {
            return Err(Action::Drop(Counter::DropNoConn));
        }
        return Err(Action::Pass(Counter::PassNotService));
    };
    if pkt.is_rst() {
        // A reset of a flow we do not know: there is nothing to end, and nothing to build for it.
        return Err(Action::Drop(Counter::DropNoConn));
    }
    open_flow::<F>(ctx, pkt, &svc, cfg, snat)
}

/// A packet of an established flow.
#[inline(always)]
fn established<F: Family>(
    ctx: &TcContext,
    pkt: &TcpSeg<F::Addr>,
    conn: ConnValueOf<F::Addr>,
) -> Result<Action, Action> {
    if conn.is_forward() {
        if pkt.is_syn() && conn.flags & CONN_F_FIN != 0 {
            // The 5-tuple of a finished flow opens again (a client reusing its port): a new flow, so a
            // backend that left the set is not chosen again.
            forget(F::conns(), &pkt.key, &conn);
            let (cfg, snat) = config::<F>().ok_or(Action::Pass(Counter::PassNotService))?;
            let svc = lookup_service::<F>(&pkt.key).ok_or(Action::Pass(Counter::PassNotService))?;
            return open_flow::<F>(ctx, pkt, &svc, cfg, snat);
        }
        if pkt.is_syn() {
            count(Counter::SynRetransmit);
        }
        restore_twin::<F>(&pkt.key, &conn);
    }
    if pkt.is_fin() && conn.flags & CONN_F_FIN == 0 {
        mark_fin::<F>(&pkt.key);
        count(Counter::FlowFin);
    }
    if pkt.is_rst() {
        forget(F::conns(), &pkt.key, &conn);
        count(Counter::FlowRst);
    }
    forward::rewrite_and_forward::<F>(ctx, pkt, &conn)
}

/// A packet of a flow whose handshake has not completed (or that was rebuilt and is not confirmed yet).
#[inline(always)]
fn half_open<F: Family>(ctx: &TcContext, pkt: &TcpSeg<F::Addr>, conn: ConnValueOf<F::Addr>) -> Result<Action, Action> {
    if conn.is_forward() {
        if let Some(other) = peek_conn::<F>(&conn.twin_key())
            && !other.is_twin_of(&pkt.key)
        {
            // An established flow holds our SNAT port: our reply entry was evicted from HALF_OPEN
            // (a flood) and another flow took the port meanwhile. Sending on would mix our segments
            // into its stream; give this young flow up instead (its client's retransmission is
            // rebuilt on a free port, where the backend resets it).
            let _ = F::half_open().remove(&pkt.key);
            return Err(Action::Drop(Counter::DropNoConn));
        }
        if pkt.is_syn() {
            count(Counter::SynRetransmit);
        } else if pkt.is_plain_ack() {
            promote::<F>(&pkt.key, &conn);
        }
    }
    if pkt.is_rst() {
        forget(F::half_open(), &pkt.key, &conn);
        count(Counter::FlowRst);
    }
    forward::rewrite_and_forward::<F>(ctx, pkt, &conn)
}

/// The client completed the handshake: move both directions to `CONNS`, and remember the client's backend.
#[inline(always)]
fn promote<F: Family>(key: &FlowKeyOf<F::Addr>, conn: &ConnValueOf<F::Addr>) {
    let conns = F::conns();
    let twin_key = conn.twin_key();
    let twin = twin_of(key, conn);
    if conns.insert(key, conn, BPF_ANY as u64).is_err() || conns.insert(&twin_key, &twin, BPF_ANY as u64).is_err() {
        // The flow keeps working from HALF_OPEN; the next ACK tries again.
        return;
    }
    forget(F::half_open(), key, conn);
    count(Counter::Established);
    if let Some(backend) = lookup_backend::<F>(conn.backend) {
        let svc = backend.service;
        let akey = AffinityKeyOf { client_addr: key.src_addr, service: svc };
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        let value = AffinityValue { backend: conn.backend, pad: 0, last_used_ns: now };
        let _ = F::affinity().insert(&akey, &value, BPF_ANY as u64);
    }
}

/// The reverse entry of `key`'s flow, written again if the LRU evicted it: without it the backend's
/// next reply would have no way back to the client. One extra lookup per client packet.
#[inline(always)]
fn restore_twin<F: Family>(key: &FlowKeyOf<F::Addr>, conn: &ConnValueOf<F::Addr>) {
    let twin_key = conn.twin_key();
    if F::conns().get_ptr(&twin_key).is_none() {
        let twin = twin_of(key, conn);
        if F::conns().insert(&twin_key, &twin, BPF_ANY as u64).is_ok() {
            count(Counter::TwinRestored);
        }
    }
}

/// Deletes both directions of the flow whose `key` maps to `conn` from `table` (absent is fine).
#[inline(always)]
fn forget<A: Copy>(table: &LruHashMap<FlowKeyOf<A>, ConnValueOf<A>>, key: &FlowKeyOf<A>, conn: &ConnValueOf<A>) {
    let _ = table.remove(key);
    let _ = table.remove(&conn.twin_key());
}

/// Marks the `CONNS` entry of `key` as having seen a FIN.
#[inline(always)]
fn mark_fin<F: Family>(key: &FlowKeyOf<F::Addr>) {
    if let Some(entry) = F::conns().get_ptr_mut(key) {
        // SAFETY: a pointer from a successful lookup; a racing writer can only set the same bit.
        unsafe { (*entry).flags |= CONN_F_FIN };
    }
}

/// The entry of the other direction of a flow whose `key` maps to `conn`.
#[inline(always)]
fn twin_of<A: Copy>(key: &FlowKeyOf<A>, conn: &ConnValueOf<A>) -> ConnValueOf<A> {
    ConnValueOf {
        src_addr: key.dst_addr,
        dst_addr: key.src_addr,
        src_port: key.dst_port,
        dst_port: key.src_port,
        backend: conn.backend,
        flags: conn.flags & !(CONN_F_FORWARD | CONN_F_FIN) | (!conn.flags & CONN_F_FORWARD),
    }
}

/// A client packet of an unknown flow to a service: a SYN opens a flow; any other segment is a flow
/// whose entries were evicted (or that predates this balancer), rebuilt the same way: the backend is
/// where its affinity or Maglev points, and the SNAT port is the first free candidate, unless a
/// candidate's reply entry still names this client, in which case that is the flow's own port.
#[inline(always)]
fn open_flow<F: Family>(
    ctx: &TcContext,
    pkt: &TcpSeg<F::Addr>,
    svc: &ServiceValue,
    cfg: &DatapathConfig,
    snat: F::Addr,
) -> Result<Action, Action> {
    let (backend_id, backend) = select_backend::<F>(&pkt.key, svc)?;
    let key = &pkt.key;
    let start = F::nat_port_start(key);
    // Built once, only the SNAT port changes per candidate: the addresses stay in memory rather
    // than in registers spilled to the stack (an IPv6 entry is 44 bytes of a 512-byte frame).
    let mut twin_key = FlowKeyOf::tcp(backend.addr, snat, backend.port, 0);
    let mut conn = ConnValueOf {
        src_addr: snat,
        dst_addr: backend.addr,
        src_port: 0,
        dst_port: backend.port,
        backend: backend_id,
        flags: CONN_F_FORWARD,
    };
    let twin = twin_of(key, &conn);
    for i in 0..MAX_PORT_PROBES {
        let Some(port) = nat_port(start, i, cfg.nat_port_min, cfg.nat_port_max) else {
            break;
        };
        twin_key.dst_port = port.to_be();
        conn.src_port = port.to_be();
        if let Some(other) = peek_conn::<F>(&twin_key) {
            if other.is_twin_of(key) {
                // Our own reply entry survived the eviction of ours: the flow is established.
                let _ = F::conns().insert(key, &conn, BPF_ANY as u64);
                count(Counter::Recovered);
                return forward::rewrite_and_forward::<F>(ctx, pkt, &conn);
            }
            continue;
        }
        if F::half_open().insert(&twin_key, &twin, BPF_NOEXIST as u64).is_err() {
            // SAFETY: compared in place at once (see `peek_conn`).
            match unsafe { F::half_open().get(&twin_key) } {
                Some(other) if other.is_twin_of(key) => {}
                _ => continue,
            }
        }
        let _ = F::half_open().insert(key, &conn, BPF_ANY as u64);
        count(if pkt.is_syn() { Counter::NewFlow } else { Counter::Rebuilt });
        return forward::rewrite_and_forward::<F>(ctx, pkt, &conn);
    }
    Err(Action::Drop(Counter::DropPortExhausted))
}

/// The backend of a new flow: the client's affinity entry if it is fresh and its backend still
/// alive in this service, else the service's Maglev slot for the client address.
#[inline(always)]
fn select_backend<F: Family>(
    key: &FlowKeyOf<F::Addr>,
    svc: &ServiceValue,
) -> Result<(BackendId, &'static BackendValueOf<F::Addr>), Action> {
    if svc.has_affinity() {
        let akey = AffinityKeyOf { client_addr: key.src_addr, service: svc.id };
        // SAFETY: the value is copied out at once; a concurrent update can at worst mix two valid entries.
        if let Some(entry) = unsafe { F::affinity().get(&akey) }.copied() {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            if is_fresh(&entry, now, svc.affinity_timeout_ns)
                && let Some(backend) = lookup_backend::<F>(entry.backend)
                && backend.is_alive_for(svc.id)
            {
                count(Counter::AffinityHit);
                return Ok((entry.backend, backend));
            }
        }
    }
    let slot = svc.id.wrapping_mul(MAGLEV_SIZE).wrapping_add(F::maglev_slot(&key.src_addr));
    let id = *MAGLEV.get(slot).ok_or(Action::Drop(Counter::DropNoBackend))?;
    let backend = lookup_backend::<F>(id).ok_or(Action::Drop(Counter::DropNoBackend))?;
    if !backend.is_alive_for(svc.id) {
        return Err(Action::Drop(Counter::DropNoBackend));
    }
    count(Counter::MaglevPick);
    Ok((id, backend))
}

#[inline(always)]
fn lookup_conn<F: Family>(key: &FlowKeyOf<F::Addr>) -> Option<ConnValueOf<F::Addr>> {
    // SAFETY: copied out at once (see `select_backend`).
    unsafe { F::conns().get(key) }.copied()
}

/// A `CONNS` entry read in place, for a comparison only: no 44-byte copy of an IPv6 entry on the
/// stack (the IPv6 path must fit the verifier's 512-byte frame).
#[inline(always)]
fn peek_conn<F: Family>(key: &FlowKeyOf<F::Addr>) -> Option<&'static ConnValueOf<F::Addr>> {
    // SAFETY: the reference is used at once for a comparison; a concurrent update can at worst
    // make it compare against a newer valid entry.
    unsafe { F::conns().get(key) }
}

#[inline(always)]
fn lookup_half_open<F: Family>(key: &FlowKeyOf<F::Addr>) -> Option<ConnValueOf<F::Addr>> {
    // SAFETY: copied out at once.
    unsafe { F::half_open().get(key) }.copied()
}

#[inline(always)]
fn lookup_service<F: Family>(key: &FlowKeyOf<F::Addr>) -> Option<ServiceValue> {
    let skey = ServiceKeyOf { addr: key.dst_addr, port: key.dst_port, proto: IPPROTO_TCP, pad: 0 };
    // SAFETY: copied out at once.
    unsafe { F::services().get(&skey) }.copied()
}

#[inline(always)]
fn lookup_backend<F: Family>(id: BackendId) -> Option<&'static BackendValueOf<F::Addr>> {
    // In place, not copied (an IPv6 backend is 28 bytes of a 512-byte frame); an array slot stays
    // valid memory, and user space rewriting it meanwhile gives the old or the new backend.
    F::backends().get(id).filter(|b| b.flags != 0)
}

/// The configuration and this family's SNAT address, if the daemon enabled its L4 path.
#[inline(always)]
fn config<F: Family>() -> Option<(&'static DatapathConfig, F::Addr)> {
    let cfg = CONFIG.get(0)?;
    F::snat_addr(cfg).map(|snat| (cfg, snat))
}
