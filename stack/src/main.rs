//! `edgesense`: the operator CLI. This is the command skeleton; each subcommand lands with its
//! issue (stack and node: bollard; flash: provision crate; dashboard; doctor).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "edgesense",
    version,
    about = "Operate an edgesense fleet: deploy the swarm stack, run node agents, flash SD cards, show dashboards"
)]
struct Cli {
    /// Docker endpoint (unix:///path or tcp://host:port) [default: $DOCKER_HOST, else the local socket]
    #[arg(long, global = true, value_name = "URL")]
    docker_host: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Deploy, inspect or remove the Prometheus + Alertmanager swarm stack.
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Start or stop the agent container on this node.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Serve the cluster dashboard.
    Dashboard,
    /// Write a Raspberry Pi OS image to an SD card and prepare it to join the swarm.
    Flash {
        /// Image file (.img, .img.xz or .zip)
        image: PathBuf,
        /// Block device or file to write to
        #[arg(long)]
        to: PathBuf,
    },
    /// Check this machine and the swarm for common problems.
    Doctor,
}

#[derive(Subcommand, Debug)]
enum StackAction {
    /// Create or update the stack (idempotent).
    Up,
    /// Remove the stack's services, configs and secrets.
    Down,
    /// Show services, tasks, agents and alerts.
    Status,
    /// Write a docker-stack.yml and its assets for `docker stack deploy`.
    Render,
}

#[derive(Subcommand, Debug)]
enum NodeAction {
    /// Start the agent container on this node.
    Run,
    /// Stop and remove the agent container.
    Stop,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let what = match cli.command {
        Command::Stack { .. } => "stack",
        Command::Node { .. } => "node",
        Command::Dashboard => "dashboard",
        Command::Flash { .. } => "flash",
        Command::Doctor => "doctor",
    };
    eprintln!("error: `edgesense {what}` is not implemented yet in this version");
    ExitCode::FAILURE
}
