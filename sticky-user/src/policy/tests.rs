//! Decisions and the weighted round-robin schedule, by example and by property.
#![expect(clippy::cast_possible_truncation, reason = "counts of schedules of at most 160 entries")]

use proptest::prelude::*;

use super::*;

/// Backends described as (available, draining).
struct Fake(Vec<(bool, bool)>);

impl View for Fake {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn available(&self, i: usize) -> bool {
        self.0[i].0
    }
    fn draining(&self, i: usize) -> bool {
        self.0[i].1
    }
}

const UP: (bool, bool) = (true, false);
const DOWN: (bool, bool) = (false, false);
const DRAINING: (bool, bool) = (true, true);

#[test]
fn schedule_interleaves_by_weight() {
    assert_eq!(schedule(&[1, 1, 1]), vec![0, 1, 2]);
    assert_eq!(schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(schedule(&[0]), vec![0]);
    assert!(schedule(&[]).is_empty());
}

#[test]
fn keeps_an_available_pinned_backend_even_when_draining() {
    let v = Fake(vec![UP, DRAINING]);
    let s = schedule(&[1, 1]);
    assert_eq!(decide(Pinned::Backend(1), false, &v, &s, || 0, &[]), Decision::Keep(1));
    assert_eq!(decide(Pinned::Backend(1), true, &v, &s, || 0, &[]), Decision::Keep(1));
}

#[test]
fn new_sessions_round_robin_over_available_active_backends() {
    let v = Fake(vec![UP, DOWN, UP, DRAINING]);
    let s = schedule(&[1, 1, 1, 1]);
    let picks: Vec<_> = (0..8).map(|c| decide(Pinned::Absent, false, &v, &s, || c, &[])).collect();
    let backends: Vec<usize> = picks
        .iter()
        .map(|d| match d {
            Decision::Pin { backend, repin: None } => *backend,
            other => panic!("new session must be pinned, got {other:?}"),
        })
        .collect();
    assert_eq!(
        backends,
        vec![0, 2, 0, 2, 0, 2, 0, 2],
        "new sessions alternate between the two available active backends"
    );
}

#[test]
fn draining_backends_take_new_sessions_only_as_a_last_resort() {
    let s = schedule(&[1, 1]);
    assert_eq!(pick(&Fake(vec![DRAINING, DOWN]), &s, 1, &[]), Some(0));
    assert_eq!(pick(&Fake(vec![DOWN, DOWN]), &s, 0, &[]), None);
}

#[test]
fn repins_with_the_reason() {
    let v = Fake(vec![DOWN, UP]);
    let s = schedule(&[1, 1]);
    assert_eq!(
        decide(Pinned::Backend(0), false, &v, &s, || 0, &[]),
        Decision::Pin { backend: 1, repin: Some(RepinReason::Unhealthy) }
    );
    assert_eq!(
        decide(Pinned::Gone, false, &v, &s, || 0, &[]),
        Decision::Pin { backend: 1, repin: Some(RepinReason::BackendGone) }
    );
    assert_eq!(
        decide(Pinned::Invalid(Fault::Signature), false, &v, &s, || 0, &[]),
        Decision::Pin { backend: 1, repin: Some(RepinReason::InvalidCookie) }
    );
    assert_eq!(
        decide(Pinned::Invalid(Fault::Expired), true, &v, &s, || 0, &[]),
        Decision::Pin { backend: 1, repin: Some(RepinReason::Expired) }
    );
    let all_up = Fake(vec![UP, UP]);
    assert_eq!(
        decide(Pinned::Backend(0), false, &all_up, &s, || 0, &[0]),
        Decision::Pin { backend: 1, repin: Some(RepinReason::ConnectFailed) }
    );
}

#[test]
fn strict_refuses_instead_of_repinning_but_not_for_bad_cookies() {
    let v = Fake(vec![DOWN, UP]);
    let s = schedule(&[1, 1]);
    assert_eq!(
        decide(Pinned::Backend(0), true, &v, &s, || 0, &[]),
        Decision::Reject(Reject::Strict(RepinReason::Unhealthy))
    );
    assert_eq!(
        decide(Pinned::Gone, true, &v, &s, || 0, &[]),
        Decision::Reject(Reject::Strict(RepinReason::BackendGone))
    );
    assert_eq!(
        decide(Pinned::Backend(1), true, &Fake(vec![UP, UP]), &s, || 0, &[1]),
        Decision::Reject(Reject::Strict(RepinReason::ConnectFailed))
    );
    assert!(matches!(
        decide(Pinned::Invalid(Fault::Malformed), true, &v, &s, || 0, &[]),
        Decision::Pin { backend: 1, .. }
    ));
    assert!(matches!(decide(Pinned::Absent, true, &v, &s, || 0, &[]), Decision::Pin { backend: 1, repin: None }));
}

#[test]
fn no_available_backend_is_a_503() {
    let v = Fake(vec![DOWN, DOWN]);
    let s = schedule(&[1, 1]);
    assert_eq!(decide(Pinned::Absent, false, &v, &s, || 0, &[]), Decision::Reject(Reject::NoBackend));
    assert_eq!(decide(Pinned::Backend(0), false, &v, &s, || 0, &[]), Decision::Reject(Reject::NoBackend));
    assert_eq!(decide(Pinned::Absent, false, &Fake(vec![UP]), &s, || 0, &[0]), Decision::Reject(Reject::NoBackend));
}

proptest! {
    #[test]
    fn schedule_gives_each_backend_its_weight(weights in proptest::collection::vec(1u32..=20, 1..8)) {
        let s = schedule(&weights);
        prop_assert_eq!(s.len() as u32, weights.iter().sum::<u32>());
        for (i, w) in weights.iter().enumerate() {
            prop_assert_eq!(s.iter().filter(|&&b| b as usize == i).count() as u32, *w);
        }
    }

    #[test]
    fn picks_are_always_usable_and_spread_evenly(states in proptest::collection::vec(0u8..3, 1..8), start in 0usize..1000) {
        let v = Fake(states.iter().map(|s| match s { 0 => UP, 1 => DOWN, _ => DRAINING }).collect());
        let s = schedule(&vec![1; v.count()]);
        let active: Vec<usize> = (0..v.count()).filter(|&i| v.0[i] == UP).collect();
        let mut counts = vec![0usize; v.count()];
        for c in start..start + s.len() * 10 {
            match pick(&v, &s, c, &[]) {
                Some(i) => {
                    prop_assert!(v.available(i), "never an unavailable backend");
                    prop_assert!(active.is_empty() || !v.draining(i), "draining only as a last resort");
                    counts[i] += 1;
                }
                None => prop_assert!(v.0.iter().all(|b| !b.0), "None only when nothing is available"),
            }
        }
        if !active.is_empty() {
            // every active backend gets new sessions; none gets more than twice its fair share
            let fair = s.len() * 10 / active.len();
            for &i in &active {
                prop_assert!(counts[i] > 0 && counts[i] <= 2 * fair + 10, "backend {} got {} of {}", i, counts[i], s.len() * 10);
            }
        }
    }
}

#[test]
fn displaced_sessions_spread_over_the_backends_left() {
    // 5 backends, 3 of them out: the two left share new picks half and half, not 4 to 1.
    let v = Fake(vec![DOWN, UP, DOWN, UP, DOWN]);
    let s = schedule(&[1; 5]);
    let mut per = [0usize; 5];
    for c in 0..60 {
        per[pick(&v, &s, c, &[]).expect("two backends are up")] += 1;
    }
    assert_eq!(per, [0, 30, 0, 30, 0]);
}

proptest! {
    #[test]
    fn any_window_of_picks_follows_the_weights_of_the_usable_backends(
        state in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..8),
        weights in proptest::collection::vec(1u32..4, 8),
        start in 0usize..1000,
    ) {
        let v = Fake(state.clone());
        let w = &weights[..state.len()];
        let s = schedule(w);
        let active: Vec<usize> = (0..state.len()).filter(|&i| state[i].0 && !state[i].1).collect();
        let draining: Vec<usize> = (0..state.len()).filter(|&i| state[i].0 && state[i].1).collect();
        let usable = if active.is_empty() { draining } else { active };
        let total: u32 = usable.iter().map(|&i| w[i]).sum();
        let mut per = vec![0u32; state.len()];
        for c in start..start + total as usize * 3 {
            match pick(&v, &s, c, &[]) {
                Some(i) => per[i] += 1,
                None => prop_assert!(usable.is_empty(), "a usable backend exists, so a pick must be made"),
            }
        }
        for i in 0..state.len() {
            let expected = if usable.contains(&i) { w[i] * 3 } else { 0 };
            prop_assert_eq!(per[i], expected, "backend {} over {} picks", i, total * 3);
        }
    }
}

/// Backends as (in flight, saturated) over available active ones, with or without shedding.
struct Loaded {
    inflight: Vec<u32>,
    max: u32,
    shed: bool,
}

impl View for Loaded {
    fn count(&self) -> usize {
        self.inflight.len()
    }
    fn available(&self, _: usize) -> bool {
        true
    }
    fn draining(&self, _: usize) -> bool {
        false
    }
    fn inflight(&self, i: usize) -> u32 {
        self.inflight[i]
    }
    fn saturated(&self, i: usize) -> bool {
        self.inflight[i] >= self.max
    }
    fn shed(&self) -> bool {
        self.shed
    }
}

#[test]
fn a_saturated_backend_takes_no_new_sessions_and_sheds_pinned_ones_only_when_asked() {
    let s = schedule(&[1, 1, 1]);
    let v = Loaded { inflight: vec![5, 1, 0], max: 5, shed: false };
    for c in 0..6 {
        let d = decide(Pinned::Absent, false, &v, &s, || c, &[]);
        assert!(matches!(d, Decision::Pin { backend: 1 | 2, repin: None }), "cursor {c}: {d:?}");
    }
    assert_eq!(decide(Pinned::Backend(0), false, &v, &s, || 0, &[]), Decision::Keep(0), "pinned sessions wait");
    let shedding = Loaded { shed: true, ..v };
    assert_eq!(
        decide(Pinned::Backend(0), false, &shedding, &s, || 0, &[]),
        Decision::Pin { backend: 2, repin: Some(RepinReason::Overloaded) },
        "shed to the least-loaded backend"
    );
    assert_eq!(decide(Pinned::Backend(0), true, &shedding, &s, || 0, &[]), Decision::Keep(0), "strict never sheds");
    let all = Loaded { inflight: vec![5, 6, 7], max: 5, shed: true };
    assert!(
        matches!(decide(Pinned::Absent, false, &all, &s, || 1, &[]), Decision::Pin { backend: 1, .. }),
        "all saturated: round robin as before"
    );
    assert_eq!(decide(Pinned::Backend(0), false, &all, &s, || 0, &[]), Decision::Keep(0), "nowhere lighter to shed to");
}
