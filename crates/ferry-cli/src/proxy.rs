//! `ferry proxy`: the UDP impairment proxy in the foreground, putting a
//! link profile between a QUIC client and its upstream until SIGINT or
//! SIGTERM, then printing what it did to the datagrams.

use std::net::SocketAddr;

use anyhow::Context;
use ferry_link::profile::{LinkProfile, Schedule};
use ferry_link::proxy::{DirectionStats, ImpairmentModel, Proxy, ProxyStats};
use serde_json::json;

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Where the client sends (e.g. 127.0.0.1:0 for a free port; the address
    /// taken is printed).
    #[arg(long)]
    listen: SocketAddr,
    /// Where the datagrams go (the QUIC listener of the far node).
    #[arg(long)]
    upstream: SocketAddr,
    /// The link to imitate: lte-bush, geo-sat, drone-wifi, iridium-sbd or acoustic.
    #[arg(long)]
    profile: &'static LinkProfile,
    /// Seed of the loss, duplication and jitter draws: the same seed gives
    /// the k-th datagram of a direction the same fate.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the link up, ignoring the profile's contact schedule.
    #[arg(long)]
    always_up: bool,
    /// Print the start line and the counters as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ProxyArgs) -> anyhow::Result<()> {
    let mut model = ImpairmentModel::from_profile(args.profile);
    if args.always_up {
        model = model.always_up();
    }
    let schedule = describe_schedule(&model.schedule);
    let proxy = Proxy::start(args.listen, args.upstream, model, args.seed)
        .await
        .context("starting the proxy")?;
    let p = args.profile;
    if args.json {
        println!(
            "{}",
            json!({
                "listen": proxy.local_addr().to_string(),
                "upstream": args.upstream.to_string(),
                "profile": p.name,
                "seed": args.seed,
            })
        );
    } else {
        println!(
            "proxy {} -> {} as {}: {} kbit/s, {} ms RTT, {:.1} % loss, {schedule}; seed {}",
            proxy.local_addr(),
            args.upstream,
            p.name,
            p.rate_bps / 1000,
            p.rtt.as_millis(),
            p.loss.mean() * 100.0,
            args.seed
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    let stats = proxy.stats();
    proxy.stop().await;
    if args.json {
        println!(
            "{}",
            json!({
                "to_upstream": direction_json(&stats.to_upstream),
                "to_client": direction_json(&stats.to_client),
            })
        );
    } else {
        print!("{}", report(&stats));
    }
    Ok(())
}

fn describe_schedule(schedule: &Schedule) -> String {
    match *schedule {
        Schedule::Always => "always up".into(),
        Schedule::Periodic { up, period } => {
            format!("up {} s of every {} s", up.as_secs(), period.as_secs())
        }
        Schedule::Outages { outage, period } => format!(
            "down for the last {} s of every {} s",
            outage.as_secs(),
            period.as_secs()
        ),
    }
}

fn direction_json(d: &DirectionStats) -> serde_json::Value {
    json!({
        "datagrams_in": d.datagrams_in,
        "bytes_in": d.bytes_in,
        "delivered": d.delivered,
        "bytes_delivered": d.bytes_delivered,
        "lost": d.lost,
        "dropped_queue": d.dropped_queue,
        "dropped_down": d.dropped_down,
        "duplicated": d.duplicated,
        "send_errors": d.send_errors,
        "in_flight": d.in_flight,
    })
}

/// The counters of both directions, one line each.
fn report(stats: &ProxyStats) -> String {
    let line = |name: &str, d: &DirectionStats| {
        format!(
            "{name}: {} datagrams ({} B) in, {} delivered ({} B), {} lost, {} queue drops, \
             {} dropped while down, {} duplicated, {} send errors\n",
            d.datagrams_in,
            d.bytes_in,
            d.delivered,
            d.bytes_delivered,
            d.lost,
            d.dropped_queue,
            d.dropped_down,
            d.duplicated,
            d.send_errors
        )
    };
    line("to upstream", &stats.to_upstream) + &line("to client  ", &stats.to_client)
}
