//! A connection's first wave (issue 15): the requests without a valid cookie that one client
//! connection sends before it sends a cookie back all go to one backend and all get the same cookie
//! value, per service. A page's first requests, sent in parallel on one HTTP/2 connection (or one
//! after the other on an HTTP/1.1 keep-alive connection that has not stored the cookie yet), so start
//! one session, not several (haproxy#2295).
//!
//! The wave's pick is taken when the first cookie-less request is decided (not when it is answered:
//! parallel requests are decided before any answer), and moved if that request ends on another
//! backend (a failed connect re-pins). A request with a valid cookie for the service ends its wave:
//! from then on the client is pinned by its cookie like any other. A pick is only followed while
//! the policy would keep a session on its backend (available, not draining); otherwise the request
//! is decided as usual and becomes the new pick.

use super::{
    conn::Proxy,
    pin::{self, PinState},
};
use crate::{
    cookie::Tag,
    policy::{Decision, Pinned},
    state::ServiceRoute,
};

/// Services a connection keeps a wave for at once; more (a client spread over many services on one
/// connection) drop the oldest pick, which only costs that service a second session.
const MAX_PICKS: usize = 4;

/// One service's pick: the backend its cookie-less requests go to, and the `Set-Cookie` line the
/// first of them got.
#[derive(Debug)]
struct Pick {
    service: Box<str>,
    tag: Tag,
    set_cookie: Option<Vec<u8>>,
}

/// The first wave of one client connection (empty, without allocation, until a cookie-less request).
#[derive(Debug, Default)]
pub struct FirstWave {
    picks: Vec<Pick>,
}

impl FirstWave {
    /// Reads the sticky cookie and decides like [`pin::pin`]; a request without a valid cookie follows
    /// the connection's pick for the service when the policy would keep a session there.
    #[must_use]
    pub fn pin<'a>(
        &mut self,
        proxy: &Proxy,
        service: &ServiceRoute,
        cookies: impl IntoIterator<Item = &'a [u8]>,
    ) -> PinState {
        let mut state = pin::pin(proxy, service, cookies);
        if !service.spec.cookie.enabled {
            return state;
        }
        if matches!(state.pinned, Pinned::Backend(_)) {
            // the client sent its cookie: the wave is over, the cookie pins from now on
            self.picks.retain(|p| *p.service != *service.spec.name);
            return state;
        }
        if let Decision::Pin { backend, repin } = state.decision {
            let followed = self
                .find(service)
                .and_then(|p| service.find(p.tag))
                .filter(|&i| matches!(pin::decide(proxy, service, Pinned::Backend(i), &[]), Decision::Keep(_)));
            match followed {
                Some(i) => state.decision = Decision::Pin { backend: i, repin },
                None => self.note(service, backend),
            }
        }
        state
    }

    /// The `Set-Cookie` line for a request of the wave answered by backend `index`: the one the wave's
    /// first answer got, so that every request of the wave carries the same value; `line` is what
    /// [`pin::answered`] made (recorded if it is the first, or if the wave moved to `index`).
    #[must_use]
    pub fn set_cookie(
        &mut self,
        service: &ServiceRoute,
        state: &PinState,
        index: usize,
        line: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let (Decision::Pin { .. }, Some(line)) = (state.decision, line) else { return None };
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return Some(line) };
        let Some(pick) = self.picks.iter_mut().find(|p| *p.service == *service.spec.name) else { return Some(line) };
        if pick.tag == tag
            && let Some(first) = &pick.set_cookie
        {
            return Some(first.clone());
        }
        pick.tag = tag;
        pick.set_cookie = Some(line.clone());
        Some(line)
    }

    fn find(&self, service: &ServiceRoute) -> Option<&Pick> {
        self.picks.iter().find(|p| *p.service == *service.spec.name)
    }

    fn note(&mut self, service: &ServiceRoute, index: usize) {
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return };
        self.picks.retain(|p| *p.service != *service.spec.name);
        if self.picks.len() >= MAX_PICKS {
            self.picks.remove(0);
        }
        self.picks.push(Pick { service: service.spec.name.as_str().into(), tag, set_cookie: None });
    }
}
