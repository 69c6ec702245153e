//! `ferry status | bundles | send | get`: the operator's view of a running
//! ferryd, over its admin socket.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ferryd::admin::{Request, request};

#[derive(clap::Args)]
pub struct Common {
    /// The daemon's admin socket (`listen.admin` in ferryd.toml).
    #[arg(long, env = "FERRY_SOCKET", default_value = "ferryd.sock")]
    socket: PathBuf,
    /// Print the daemon's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
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
}

#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    common: Common,
    /// Manifest id of the object, as `ferry bundles` or `ferry send` print it.
    manifest: String,
    /// Where to write it.
    #[arg(long)]
    out: PathBuf,
}

fn ask(common: &Common, req: Request) -> anyhow::Result<serde_json::Value> {
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
    let delivered = s["delivered"].as_array().map_or(0, Vec::len);
    let c = &s["counters"];
    println!("node      {}", s["node"].as_str().unwrap_or("?"));
    println!("links up  {}", s["links_up"].as_array().map_or(0, Vec::len));
    println!("bundles   {bundles} held, {delivered} delivered here");
    println!(
        "custody   {} accepted, {} released, {} refused, {} expired",
        c["custody_accepted"], c["custody_released"], c["custody_refused"], c["expired"]
    );
    println!(
        "traffic   {} frames / {} bytes in, {} frames / {} bytes out",
        c["frames_in"], c["bytes_in"], c["frames_out"], c["bytes_out"]
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
            _ => "held".to_string(),
        };
        println!(
            "{}  {} B  to {}  {state}",
            b["id"].as_str().unwrap_or("?"),
            b["payload_bytes"],
            b["destination"].as_str().unwrap_or("?")
        );
    }
    for d in s["delivered"].as_array().into_iter().flatten() {
        println!(
            "{}  delivered, manifest {}",
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
    if args.common.json {
        print_json(&answer);
        return Ok(());
    }
    for s in answer["sent"].as_array().into_iter().flatten() {
        println!(
            "{}  {} B ({} B new)  bundle {}  manifest {}",
            s["path"].as_str().unwrap_or("?"),
            s["bytes"],
            s["new_bytes"],
            s["bundle"].as_str().unwrap_or("?"),
            s["manifest"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let answer = ask(
        &args.common,
        Request::Get {
            manifest: args.manifest,
            out: out.clone(),
        },
    )?;
    if args.common.json {
        print_json(&answer);
    } else {
        println!("{} B verified into {}", answer["bytes"], out.display());
    }
    Ok(())
}
