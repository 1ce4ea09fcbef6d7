//! The kernel data path, and the only user of aya: load the embedded eBPF object, attach its
//! programs, read its counters.
//!
//! Every map is taken by its `sticky_common::maps` name and checked against the registry's shape at
//! load (with the capacities the daemon asked for, [`sizes`]), so a daemon never runs against an
//! object built from other sources. Failing to load is not fatal to sticky: callers log
//! [`DatapathError`] once and serve in user space. tcp mode's maps live in [`tcp`] (typed access,
//! usage) and [`sync`] (backend sets into `BACKENDS`/`MAGLEV`/`SERVICES`); the splice maps in
//! [`splice`]; [`route`] and [`socket`] are the kernel facts both need beside the maps.

pub mod route;
pub mod sizes;
pub mod socket;
pub mod splice;
pub mod sync;
pub mod tcp;

pub use aya::programs::XdpMode;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, MapInfo, PerCpuArray},
    programs::{ProgramError, SchedClassifier, SkSkb, TcAttachType, Xdp},
};
use sticky_common::{
    Counter, StatsValue,
    maps::{self, MapSpec},
    user::ShapeMismatch,
};
use tokio::io::unix::AsyncFd;

/// The eBPF object built by `cargo xtask build-ebpf` (via build.rs); empty if built with `STICKY_EBPF_SKIP=1`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sticky.bpf.o"));

/// Name of the tc ingress classifier.
pub const PROG_TC: &str = "sticky_tc";
/// Name of the XDP program.
pub const PROG_XDP: &str = "sticky_xdp";
/// Name of the `sk_skb` stream verdict of spliced sockets.
pub const PROG_SPLICE: &str = "sticky_splice";

/// What can go wrong while loading or driving the data path.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The binary carries no eBPF object.
    #[error("this sticky binary was built without its eBPF programs (STICKY_EBPF_SKIP=1)")]
    NotEmbedded,
    /// The kernel refused the object (no `CAP_BPF`, old kernel, verifier).
    #[error("failed to load the eBPF object (needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON, Linux >= 6.6)")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program the daemon needs is not in the object.
    #[error("program {name} not found in the eBPF object")]
    MissingProgram {
        /// Program name.
        name: &'static str,
    },
    /// A program failed to load or attach.
    #[error("failed to {action} program {name}{}", iface.as_ref().map(|i| format!(" on {i}")).unwrap_or_default())]
    Program {
        /// What was attempted: "load", "attach".
        action: &'static str,
        /// Program name.
        name: &'static str,
        /// Interface, for attach.
        iface: Option<String>,
        /// The kernel's or aya's reason (boxed: aya's errors are large).
        #[source]
        source: Box<ProgramError>,
    },
    /// A map is missing from the object.
    #[error("map {name} not found in the eBPF object")]
    MissingMap {
        /// Map name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("map {name}: {action} failed")]
    Map {
        /// Map name.
        name: &'static str,
        /// What was attempted.
        action: &'static str,
        /// aya's reason (boxed: aya's errors are large).
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map's kernel shape differs from the registry.
    #[error("{0}")]
    Shape(ShapeMismatch),
    /// A bounded resource is exhausted.
    #[error("out of {what} (at most {max}; raise the matching --max-* flag)")]
    Full {
        /// What ran out.
        what: &'static str,
        /// The bound.
        max: u32,
    },
}

/// The loaded eBPF object and its typed maps.
pub struct Datapath {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, StatsValue>,
    tcp: tcp::TcpMaps,
    splice: splice::SpliceMaps,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Datapath {
    /// Loads the embedded object into the kernel (programs are loaded when attached).
    ///
    /// Kernel log records at `log_level` and above are formatted in the kernel and forwarded to
    /// `tracing` once [`Datapath::spawn_log_drain`] runs.
    ///
    /// # Errors
    /// No object embedded, the kernel refuses it, or a map's shape differs from the registry.
    pub fn load(log_level: aya_log::Level) -> Result<Self, DatapathError> {
        Self::load_with(log_level, &sizes::MapSizes::default())
    }

    /// Loads the embedded object with the map capacities in `sizes`.
    ///
    /// # Errors
    /// As [`Datapath::load`]; also a size of 0.
    pub fn load_with(log_level: aya_log::Level, sizes: &sizes::MapSizes) -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::NotEmbedded);
        }
        // Kernels >= 5.11 charge BPF memory to the memory cgroup, not RLIMIT_MEMLOCK: nothing to raise.
        let level = log_level as u8;
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &level, false);
        for (name, size) in sizes.overrides() {
            loader.map_max_entries(name, size);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| DatapathError::Load(Box::new(e)))?;
        for spec in maps::ALL {
            let map = ebpf.map(spec.name).ok_or(DatapathError::MissingMap { name: spec.name })?;
            let mut spec = *spec;
            if let Some(size) = sizes.overrides().find(|(n, _)| *n == spec.name).map(|(_, s)| s) {
                spec.max_entries = size;
            }
            check_shape(&spec, map)?;
        }
        let stats = take_map(&mut ebpf, maps::STATS)?;
        let stats = PerCpuArray::try_from(stats).map_err(|source| DatapathError::Map {
            name: maps::STATS,
            action: "open",
            source: Box::new(source),
        })?;
        let tcp = tcp::TcpMaps::take(&mut ebpf, sizes)?;
        let splice = splice::SpliceMaps::take(&mut ebpf, sizes.splice)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::warn!(error = %e, "kernel log records will not reach sticky's log");
                None
            }
        };
        Ok(Self { ebpf, stats, tcp, splice, logger })
    }

    /// Attaches the tc classifier to `iface`'s ingress (TCX on Linux >= 6.6, netlink clsact before).
    ///
    /// # Errors
    /// The program fails to load (verifier) or to attach (no such interface, no permission).
    pub fn attach_tc(&mut self, iface: &str) -> Result<(), DatapathError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, PROG_TC)?;
        loaded(prog.load(), PROG_TC)?;
        prog.attach(iface, TcAttachType::Ingress).map_err(|source| DatapathError::Program {
            action: "attach",
            name: PROG_TC,
            iface: Some(iface.to_owned()),
            source: Box::new(source),
        })?;
        tracing::info!(program = PROG_TC, iface, "attached tc ingress classifier");
        Ok(())
    }

    /// Attaches the XDP program to `iface` in `mode`.
    ///
    /// # Errors
    /// The program fails to load (verifier) or to attach (driver, mode, permission).
    pub fn attach_xdp(&mut self, iface: &str, mode: XdpMode) -> Result<(), DatapathError> {
        let prog: &mut Xdp = program(&mut self.ebpf, PROG_XDP)?;
        loaded(prog.load(), PROG_XDP)?;
        prog.attach(iface, mode).map_err(|source| DatapathError::Program {
            action: "attach",
            name: PROG_XDP,
            iface: Some(iface.to_owned()),
            source: Box::new(source),
        })?;
        tracing::info!(program = PROG_XDP, iface, ?mode, "attached XDP program");
        Ok(())
    }

    /// Attaches `sticky_splice` to `SPLICE_SOCKS` as its stream verdict: from then on a socket that
    /// joins the map has what it receives sent out of its peer (see [`splice::SpliceMaps::join`]).
    ///
    /// # Errors
    /// The program fails to load (verifier) or to attach (kernel without sockmap support).
    pub fn attach_splice(&mut self) -> Result<(), DatapathError> {
        let prog: &mut SkSkb = program(&mut self.ebpf, PROG_SPLICE)?;
        loaded(prog.load(), PROG_SPLICE)?;
        prog.attach(self.splice.socks().fd()).map_err(|source| DatapathError::Program {
            action: "attach",
            name: PROG_SPLICE,
            iface: None,
            source: Box::new(source),
        })?;
        tracing::debug!(program = PROG_SPLICE, "attached the splice verdict to SPLICE_SOCKS");
        Ok(())
    }

    /// The splice maps: join and leave socket pairs, bytes redirected, usage.
    pub fn splice(&mut self) -> &mut splice::SpliceMaps {
        &mut self.splice
    }

    /// The packet counters, summed over every CPU.
    ///
    /// # Errors
    /// The kernel refuses the map lookup.
    pub fn stats(&self) -> Result<Stats, DatapathError> {
        let mut stats = Stats::default();
        for counter in Counter::ALL {
            let per_cpu = self.stats.get(&counter.index(), 0).map_err(|source| DatapathError::Map {
                name: maps::STATS,
                action: "lookup",
                source: Box::new(source),
            })?;
            stats.0[counter.index() as usize] = per_cpu.iter().sum();
        }
        Ok(stats)
    }

    /// tcp mode's maps: configuration, services, backends, Maglev rows, flows, affinity.
    pub fn tcp(&mut self) -> &mut tcp::TcpMaps {
        &mut self.tcp
    }

    /// Map usage (entries used vs capacity) and the packet counters, for `/metrics` and `sticky inspect`.
    ///
    /// Counting walks the maps (a syscall or two per entry): 4.5 ms measured for ~3000 entries.
    ///
    /// # Errors
    /// The kernel refuses a map read.
    pub fn usage(&self) -> Result<tcp::Usage, DatapathError> {
        self.tcp.usage(self.stats()?)
    }

    /// The underlying aya object, for tests that run programs with `BPF_PROG_TEST_RUN`.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Forwards kernel log records to `tracing` from a task on the current tokio runtime.
    ///
    /// Does nothing if the logger could not be set up (already warned at load) or was taken before.
    pub fn spawn_log_drain(&mut self) {
        let Some(logger) = self.logger.take() else {
            return;
        };
        #[expect(unsafe_code, reason = "tokio's AsyncFd registration is unsafe since tokio#8587 (I/O safety)")]
        // SAFETY: the logger owns the ring buffer's fd and moves into the AsyncFd, which deregisters
        // it before dropping the logger; nothing else closes or replaces that fd.
        let registered = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
        match registered {
            Ok(mut fd) => {
                tokio::spawn(async move {
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            return;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "kernel log records will not reach sticky's log"),
        }
    }
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath").finish_non_exhaustive()
    }
}

/// Packet counters summed over every CPU, indexed by [`Counter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats(pub [StatsValue; Counter::COUNT as usize]);

impl Default for Stats {
    /// All zero (arrays derive `Default` only up to 32 elements).
    fn default() -> Self {
        Self([0; Counter::COUNT as usize])
    }
}

impl Stats {
    /// The value of one counter.
    #[must_use]
    pub fn get(&self, counter: Counter) -> StatsValue {
        self.0[counter.index() as usize]
    }

    /// Every counter with its value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, StatsValue)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(DatapathError::MissingProgram { name })?;
    prog.try_into().map_err(|source| DatapathError::Program {
        action: "open",
        name,
        iface: None,
        source: Box::new(source),
    })
}

/// A program's `load()` result, where "already loaded" (by an earlier attach) is success.
fn loaded(result: Result<(), ProgramError>, name: &'static str) -> Result<(), DatapathError> {
    match result {
        Ok(()) | Err(ProgramError::AlreadyLoaded) => Ok(()),
        Err(source) => Err(DatapathError::Program { action: "load", name, iface: None, source: Box::new(source) }),
    }
}

pub(crate) fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::MissingMap { name })
}

/// The kernel's info about a loaded map (only the kinds the registry uses).
fn map_info(map: &Map) -> Option<Result<MapInfo, aya::maps::MapError>> {
    match map {
        Map::PerCpuArray(data)
        | Map::RingBuf(data)
        | Map::Array(data)
        | Map::HashMap(data)
        | Map::LruHashMap(data)
        | Map::SockHash(data) => Some(data.info()),
        _ => None,
    }
}

fn check_shape(spec: &MapSpec, map: &Map) -> Result<(), DatapathError> {
    let info = map_info(map)
        .ok_or(DatapathError::MissingMap { name: spec.name })?
        .map_err(|source| DatapathError::Map { name: spec.name, action: "info", source: Box::new(source) })?;
    spec.check(&info).map_err(DatapathError::Shape)
}
