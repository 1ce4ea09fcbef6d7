use std::time::Duration;

use proptest::prelude::*;

use super::*;

const DAY: i64 = 86_400;
const MIN: i64 = 60;

fn valid(not_before: i64, not_after: i64) -> Validity {
    Validity { not_before, not_after }
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_lifetime() {
    assert_eq!(renew_at(valid(1_000, 1_000 + 90 * DAY)), 1_000 + 60 * DAY, "day 60 of 90");
    assert_eq!(renew_at(valid(0, 6 * DAY)), 4 * DAY, "day 4 of a 6-day certificate");
    assert_eq!(renew_at(valid(0, 100)), 66, "seconds round down");
    assert_eq!(renew_at(valid(500, 400)), 500, "an inverted validity is due at once");
}

#[test]
fn no_certificate_is_ordered_at_once() {
    assert_eq!(plan(1_000, None, None, &Backoff::default()), Plan::Order { renewal: false });
}

#[test]
fn a_certificate_waits_until_two_thirds_then_is_renewed() {
    let v = valid(0, 90 * DAY);
    let b = Backoff::default();
    assert_eq!(plan(59 * DAY, Some(v), None, &b), Plan::Wait { until: 60 * DAY });
    assert_eq!(plan(60 * DAY, Some(v), None, &b), Plan::Order { renewal: true });
    assert_eq!(plan(95 * DAY, Some(v), None, &b), Plan::Order { renewal: true }, "an expired one too");
}

#[test]
fn failures_back_off_doubling_from_five_minutes_to_six_hours() {
    let b = Backoff::default();
    let pauses: Vec<u64> = (1..=9).map(|n| b.pause(n).as_secs() / 60).collect();
    assert_eq!(pauses, vec![5, 10, 20, 40, 80, 160, 320, 360, 360]);
    assert_eq!(b.pause(u32::MAX), Duration::from_secs(6 * 3600), "no overflow at any count");
    assert_eq!(b.pause(0), b.first, "zero failures counts as the first");
}

#[test]
fn after_a_failure_the_next_order_waits_for_the_back_off() {
    let b = Backoff::default();
    let failed = Some(Failures { count: 3, last: 1_000 });
    assert_eq!(plan(1_000 + 19 * MIN, None, failed, &b), Plan::Wait { until: 1_000 + 20 * MIN });
    assert_eq!(plan(1_000 + 20 * MIN, None, failed, &b), Plan::Order { renewal: false });
    let v = valid(0, 90 * DAY);
    let failed = Some(Failures { count: 1, last: 60 * DAY });
    assert_eq!(plan(60 * DAY + MIN, Some(v), failed, &b), Plan::Wait { until: 60 * DAY + 5 * MIN });
}

#[test]
fn an_old_failure_does_not_advance_a_renewal() {
    let v = valid(0, 90 * DAY);
    let old = Some(Failures { count: 1, last: 0 });
    assert_eq!(plan(10 * DAY, Some(v), old, &Backoff::default()), Plan::Wait { until: 60 * DAY });
}

proptest! {
    #[test]
    fn renewal_falls_within_the_validity(not_before in -1i64 << 40..1i64 << 40, lifetime in 0i64..1i64 << 36) {
        let at = renew_at(valid(not_before, not_before + lifetime));
        prop_assert!(at >= not_before && at <= not_before + lifetime);
        prop_assert!(lifetime < 3 || at > not_before, "a lifetime of 3 s or more is not due at its start");
    }

    #[test]
    fn a_wait_is_always_in_the_future(
        now in 0i64..1i64 << 34,
        not_before in 0i64..1i64 << 34,
        lifetime in 0i64..1i64 << 30,
        failures in proptest::option::of((1u32..64, 0i64..1i64 << 34)),
    ) {
        let failures = failures.map(|(count, last)| Failures { count, last });
        let current = valid(not_before, not_before + lifetime);
        match plan(now, Some(current), failures, &Backoff::default()) {
            Plan::Wait { until } => prop_assert!(until > now),
            Plan::Order { renewal } => {
                prop_assert!(renewal);
                prop_assert!(now >= renew_at(current));
            }
        }
    }
}
