//! `sticky inspect`: the packet classifier attached to one interface, its counters printed at an
//! interval (a diagnostic of the eBPF data path).

use std::time::Duration;

use super::AppError;
use crate::{
    cli::{InspectArgs, XdpModeArg},
    datapath::{Datapath, XdpMode},
};

/// Attaches at tc ingress (or XDP) and prints every counter each `--interval` until `stop`
/// completes or `--count` prints are done.
///
/// # Errors
/// A bad interval, or the data path cannot load, attach or be read.
pub async fn inspect(args: &InspectArgs, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    let interval = Some(args.interval)
        .filter(|i| i.is_finite() && *i > 0.0)
        .and_then(|i| Duration::try_from_secs_f64(i).ok())
        .ok_or(AppError::Interval { interval: args.interval })?;
    let mut datapath = Datapath::load(crate::telemetry::kernel_log_level())?;
    datapath.spawn_log_drain();
    match args.xdp {
        None => datapath.attach_tc(&args.iface)?,
        Some(mode) => {
            let mode = match mode {
                XdpModeArg::Auto => XdpMode::Default,
                XdpModeArg::Skb => XdpMode::Skb,
                XdpModeArg::Native => XdpMode::Driver,
            };
            datapath.attach_xdp(&args.iface, mode)?;
        }
    }
    println!("attached to {}; counters every {} s (Ctrl-C to stop)", args.iface, args.interval);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    tokio::pin!(stop);
    let mut printed = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => break,
        }
        let stats = datapath.stats()?;
        let line: Vec<String> = stats.iter().map(|(c, v)| format!("{}={v}", c.name())).collect();
        println!("{}", line.join(" "));
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    Ok(())
}
