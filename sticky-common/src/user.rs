//! User-space helpers over the registry (feature `user`): compare a loaded map with its [`MapSpec`].

use crate::maps::MapSpec;

/// A loaded map whose kernel-reported shape differs from the registry: the object and the daemon
/// were built from different sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Map name.
    pub name: &'static str,
    /// `(key_size, value_size, max_entries)` the registry expects.
    pub expected: (u32, u32, u32),
    /// `(key_size, value_size, max_entries)` the kernel reports.
    pub actual: (u32, u32, u32),
}

impl core::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (ek, ev, em) = self.expected;
        let (ak, av, am) = self.actual;
        write!(
            f,
            "map {}: registry says key {ek} B, value {ev} B, {em} entries; kernel says key {ak} B, value {av} B, {am} entries",
            self.name
        )
    }
}

impl MapSpec {
    /// Checks a loaded map's kernel info against this spec.
    ///
    /// # Errors
    /// The sizes or the capacity differ.
    pub fn check(&self, info: &aya::maps::MapInfo) -> Result<(), ShapeMismatch> {
        let expected = (self.key_size, self.value_size, self.max_entries);
        let actual = (info.key_size(), info.value_size(), info.max_entries());
        if expected == actual { Ok(()) } else { Err(ShapeMismatch { name: self.name, expected, actual }) }
    }
}

// SAFETY: each type is #[repr(C)], Copy, made only of integers, with explicit padding fields, so every
// byte is initialised and every bit pattern is a valid value.
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait: the layouts above make it sound")]
mod pod {
    use crate::{
        AffinityKey, AffinityKey6, AffinityValue, BackendValue, BackendValue6, ConnValue, ConnValue6, DatapathConfig,
        FlowKey, FlowKey6, ServiceKey, ServiceKey6, ServiceValue,
    };
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for ConnValue {}
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for BackendValue {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for DatapathConfig {}
    unsafe impl aya::Pod for FlowKey6 {}
    unsafe impl aya::Pod for ConnValue6 {}
    unsafe impl aya::Pod for ServiceKey6 {}
    unsafe impl aya::Pod for BackendValue6 {}
    unsafe impl aya::Pod for AffinityKey6 {}
}
