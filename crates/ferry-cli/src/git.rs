//! `ferry git publish`: hand a repository's refs to the running daemon as a
//! Git release (a thin pack of what the destination lacks).

use std::path::PathBuf;

use ferryd::admin::Request;

use crate::daemon::{Common, ask};

#[derive(clap::Subcommand)]
pub enum GitCommand {
    /// Publish a repository's refs to an endpoint; prints what was sent
    /// (nothing when the destination already has these refs).
    Publish(PublishArgs),
}

#[derive(clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    common: Common,
    /// The repository: a work tree or a bare repository on this machine.
    repo: PathBuf,
    /// Refs to publish: a branch name (`main`) or a pattern (`refs/tags/*`);
    /// repeat for more. Default: every branch and tag.
    #[arg(long = "ref")]
    refs: Vec<String>,
    /// A peer name, a node id, or group:NAME.
    #[arg(long)]
    to: String,
    /// The repository's name at the leaves (default: the directory's name
    /// without `.git`); leaves serve it at /<name>.git.
    #[arg(long)]
    name: Option<String>,
    /// Seconds the release may live before it is deleted undelivered
    /// (default: 30 days). One deleted on its way is given up, with the
    /// releases built on it: the next release builds on what arrives.
    #[arg(long)]
    lifetime: Option<u64>,
    /// Send a whole release (every object the refs reach), forgetting what
    /// this destination was sent: for a leaf that lost its repository.
    #[arg(long)]
    whole: bool,
}

pub fn run(command: GitCommand) -> anyhow::Result<()> {
    match command {
        GitCommand::Publish(args) => {
            // The daemon runs elsewhere: name the repository absolutely.
            let repo = std::path::absolute(&args.repo)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.repo.display()))?;
            let answer = ask(
                &args.common,
                Request::GitPublish {
                    repo,
                    name: args.name,
                    refs: args.refs,
                    to: args.to,
                    lifetime_s: args.lifetime,
                    whole: args.whole,
                },
            )?;
            if args.common.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else if let Some(bundle) = answer["bundle"].as_str() {
                let builds_on = match answer["base"].as_u64() {
                    Some(base) => format!("on release {base}"),
                    None => "whole".to_owned(),
                };
                println!(
                    "{}: release {} ({builds_on}) with {} ref change(s), {} object(s), {} B  bundle {bundle}",
                    answer["repository"].as_str().unwrap_or("?"),
                    answer["sequence"],
                    answer["refs"],
                    answer["objects"],
                    answer["payload_bytes"],
                );
            } else {
                println!(
                    "{}: unchanged since the last release to this destination; nothing sent",
                    answer["repository"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
    }
}
