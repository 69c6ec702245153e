//! `ferry status | peers | bundles | send | get | logs`: the operator's view
//! of a running ferryd, over its admin socket.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ferryd::admin::{PeerStatus, Request, request, stream};
use indicatif::HumanBytes;

use crate::watch::{self, Target, WatchOptions};

#[derive(clap::Args)]
pub struct Common {
    /// The daemon's admin socket (`listen.admin` in ferryd.toml).
    #[arg(long, env = "FERRY_SOCKET", default_value = "ferryd.sock")]
    pub socket: PathBuf,
    /// Print the daemon's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    common: Common,
    /// A file, or a directory whose files each become a bundle.
    path: PathBuf,
    /// A peer name, a node id, or group:NAME.
    #[arg(long)]
    to: String,
    /// bulk, normal or expedited.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// Seconds the bundle may live before it is deleted undelivered.
    #[arg(long)]
    lifetime: Option<u64>,
    /// Then show progress until every bundle is delivered or handed over
    /// to its next hop.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    watch: WatchOptions,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["manifest", "name", "all"])))]
pub struct GetArgs {
    #[command(flatten)]
    common: Common,
    /// Manifest id of the object, as `ferry bundles` or `ferry send` print it.
    manifest: Option<String>,
    /// The newest file delivered here under this name (`ferry send DIR`
    /// names each file by its path under DIR).
    #[arg(long)]
    name: Option<String>,
    /// Every file delivered here, the newest of each name, written into the
    /// directory --out by its name.
    #[arg(long)]
    all: bool,
    /// With --all: only the names at or below this path.
    #[arg(long, requires = "all")]
    under: Option<String>,
    /// Where to write it (with --all, a directory).
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn ask(common: &Common, req: Request) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    runtime
        .block_on(request(&common.socket, &req))
        .map_err(|e| anyhow!(e))
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub fn status(common: Common) -> anyhow::Result<()> {
    let s = ask(&common, Request::Status)?;
    if common.json {
        print_json(&s);
        return Ok(());
    }
    let bundles = s["bundles"].as_array().map_or(0, Vec::len);
    let c = &s["counters"];
    let delivered = &c["delivered"];
    println!("node      {}", s["node"].as_str().unwrap_or("?"));
    println!("links up  {}", s["links_up"].as_array().map_or(0, Vec::len));
    println!("bundles   {bundles} held, {delivered} delivered here");
    println!(
        "custody   {} accepted, {} released, {} refused, {} expired, {} offers repeated",
        c["custody_accepted"],
        c["custody_released"],
        c["custody_refused"],
        c["expired"],
        c["custody_retransmissions"]
    );
    println!(
        "traffic   {} frames / {} bytes in, {} frames / {} bytes out",
        c["frames_in"], c["bytes_in"], c["frames_out"], c["bytes_out"]
    );
    println!(
        "chunks    {} bytes sent as asked, {} bytes ahead of an answer (pipelined)",
        c["asked_bytes"], c["speculative_bytes"]
    );
    Ok(())
}

pub fn bundles(common: Common) -> anyhow::Result<()> {
    let s = ask(&common, Request::Status)?;
    if common.json {
        print_json(&serde_json::json!({ "bundles": s["bundles"], "delivered": s["delivered"] }));
        return Ok(());
    }
    for b in s["bundles"].as_array().into_iter().flatten() {
        let state = match (&b["received"], b["pending_hops"].as_array()) {
            (serde_json::Value::Array(r), _) => format!("receiving {}/{} B", r[0], r[1]),
            (_, Some(hops)) if !hops.is_empty() => format!("waiting for {} hop(s)", hops.len()),
            _ if b["delivered_here"] == true => {
                format!(
                    "delivered, manifest {}",
                    b["manifest"].as_str().unwrap_or("?")
                )
            }
            _ => "held".to_string(),
        };
        let name = watch::carries(b).map_or(String::new(), |what| format!("  {what}"));
        println!(
            "{}  {} B  to {}  {state}{name}",
            b["id"].as_str().unwrap_or("?"),
            b["payload_bytes"],
            b["destination"].as_str().unwrap_or("?")
        );
    }
    // Delivered here and no longer held (expired, or released): the last
    // ones the daemon remembers.
    let held: std::collections::BTreeSet<&str> = s["bundles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["id"].as_str())
        .collect();
    for d in s["delivered"].as_array().into_iter().flatten() {
        if held.contains(d["bundle"].as_str().unwrap_or_default()) {
            continue;
        }
        println!(
            "{}  delivered, manifest {}, no longer held",
            d["bundle"].as_str().unwrap_or("?"),
            d["manifest"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub fn send(args: SendArgs) -> anyhow::Result<()> {
    let path = std::path::absolute(&args.path)
        .with_context(|| format!("resolving {}", args.path.display()))?;
    let answer = ask(
        &args.common,
        Request::Send {
            path,
            to: args.to,
            priority: Some(args.priority),
            lifetime_s: args.lifetime,
        },
    )?;
    let sent = answer["sent"].as_array().cloned().unwrap_or_default();
    if args.common.json && args.wait {
        // JSON lines: the answer, then the watch's events.
        println!("{answer}");
    } else if args.common.json {
        print_json(&answer);
    }
    for s in sent.iter().filter(|_| !args.common.json) {
        println!(
            "{}  {} B ({} B new)  bundle {}  manifest {}",
            s["path"].as_str().unwrap_or("?"),
            s["bytes"],
            s["new_bytes"],
            s["bundle"].as_str().unwrap_or("?"),
            s["manifest"].as_str().unwrap_or("?")
        );
    }
    if !args.wait {
        return Ok(());
    }
    let targets = sent
        .iter()
        .map(|s| Target {
            id: s["bundle"].as_str().unwrap_or_default().to_string(),
            label: s["path"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    watch::run(&args.common, targets, &args.watch)
}

pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let request = match (args.manifest, args.name) {
        _ if args.all => Request::Restore {
            out: out.clone(),
            under: args.under,
        },
        (_, Some(name)) => Request::GetNamed {
            name,
            out: out.clone(),
        },
        (Some(manifest), None) => Request::Get {
            manifest,
            out: out.clone(),
        },
        (None, None) => unreachable!("clap requires a manifest, --name or --all"),
    };
    let answer = ask(&args.common, request)?;
    if args.common.json {
        print_json(&answer);
    } else if args.all {
        for file in answer["written"].as_array().into_iter().flatten() {
            println!(
                "{}  {}",
                HumanBytes(file["bytes"].as_u64().unwrap_or(0)),
                file["name"].as_str().unwrap_or("?")
            );
        }
        println!(
            "{} files, {} verified into {}",
            answer["written"].as_array().map_or(0, Vec::len),
            HumanBytes(answer["bytes"].as_u64().unwrap_or(0)),
            out.display()
        );
    } else {
        println!("{} B verified into {}", answer["bytes"], out.display());
    }
    let skipped = answer["skipped"].as_array().map_or(&[][..], Vec::as_slice);
    for file in skipped {
        eprintln!(
            "not written: {} (bundle {}): {}",
            file["name"].as_str().unwrap_or("?"),
            file["bundle"].as_str().unwrap_or("?"),
            file["reason"].as_str().unwrap_or("?")
        );
    }
    if !skipped.is_empty() {
        return Err(anyhow!(
            "{} delivered files were not written",
            skipped.len()
        ));
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    common: Common,
    /// How many of the last lines to print (ferryd keeps 1000).
    #[arg(short = 'n', long, default_value_t = 100)]
    lines: usize,
    /// Then print every new line until interrupted.
    #[arg(short, long)]
    follow: bool,
}

pub fn peers(common: Common) -> anyhow::Result<()> {
    let answer = ask(&common, Request::Peers)?;
    if common.json {
        print_json(&serde_json::json!({ "peers": answer["peers"] }));
        return Ok(());
    }
    let peers: Vec<PeerStatus> = serde_json::from_value(answer["peers"].clone())
        .context("ferryd answered `peers` with an unexpected shape")?;
    if peers.is_empty() {
        println!("no peers configured");
        return Ok(());
    }
    print!("{}", peer_table(&peers));
    Ok(())
}

/// One line per peer under a header, columns aligned: the node id cut to
/// 16 hex digits, traffic in binary units.
fn peer_table(peers: &[PeerStatus]) -> String {
    let header = [
        "PEER",
        "NODE",
        "TRANSPORT",
        "ADDRESS",
        "PROFILE",
        "LINK",
        "IN",
        "OUT",
    ];
    let traffic = |frames: u64, bytes: u64| format!("{frames} frames / {}", HumanBytes(bytes));
    let rows: Vec<[String; 8]> = peers
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.node.chars().take(16).collect(),
                p.transport.clone(),
                p.address.clone().unwrap_or_else(|| "(dials in)".into()),
                p.profile.clone(),
                if p.up { "up" } else { "down" }.into(),
                traffic(p.frames_in, p.bytes_in),
                traffic(p.frames_out, p.bytes_out),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let request = Request::Logs {
        lines: Some(args.lines),
        follow: args.follow,
    };
    let json = args.common.json;
    let print = |line: &str| {
        if json {
            println!("{}", serde_json::json!({ "line": line }));
        } else {
            println!("{line}");
        }
    };
    if !args.follow {
        let answer = ask(&args.common, request)?;
        for line in answer["lines"].as_array().into_iter().flatten() {
            print(line.as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    runtime
        .block_on(stream(&args.common.socket, &request, |message| {
            if let Some(lines) = message["lines"].as_array() {
                lines
                    .iter()
                    .for_each(|l| print(l.as_str().unwrap_or_default()));
            } else if let Some(line) = message["line"].as_str() {
                print(line);
            } else if let Some(skipped) = message["skipped"].as_u64() {
                eprintln!("ferry: {skipped} log lines were skipped (this terminal fell behind)");
            }
            true
        }))
        .map_err(|e| anyhow!(e))?;
    Err(anyhow!("ferryd closed the log stream (it stopped)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_table_aligns_columns_and_shortens_node_ids() {
        let peer = |name: &str, address: Option<&str>, up| PeerStatus {
            name: name.into(),
            node: "ab".repeat(32),
            transport: "quic".into(),
            address: address.map(Into::into),
            profile: "geo-sat".into(),
            link: Some(0),
            up,
            frames_in: 3,
            bytes_in: 2048,
            frames_out: 0,
            bytes_out: 0,
        };
        let table = peer_table(&[
            peer("leaf-1", Some("127.0.0.1:7410"), true),
            peer("base", None, false),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("PEER    NODE "), "{table}");
        assert!(
            lines[1]
                .starts_with("leaf-1  abababababababab  quic       127.0.0.1:7410  geo-sat  up  "),
            "{table}"
        );
        assert!(lines[1].contains("3 frames / 2.00 KiB"), "{table}");
        assert!(
            lines[2].contains("(dials in)") && lines[2].contains("down"),
            "{table}"
        );
        // The address column is as wide as its widest cell in every row.
        let at = lines[0].find("PROFILE").unwrap();
        assert_eq!(lines[1].find("geo-sat"), Some(at), "{table}");
        assert_eq!(lines[2].find("geo-sat"), Some(at), "{table}");
    }
}
