//! `simulate`: the OpenAI-shaped fake API on an address of the user's choice.

use super::Exit;
use crate::simulate::{self, SimState, Simulator};
use std::net::SocketAddr;

/// Serves the simulator until `shutdown`.
pub async fn run(
    listen: SocketAddr,
    scenario: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Exit> {
    let state = SimState::new(scenario).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let sim = Simulator::start(listener, state)?;
    println!(
        "simulator listening on http://{}/v1 (scenario {scenario})",
        sim.addr
    );
    println!(
        "fixed scenarios: http://{}/s/{{scenario}}/v1; scenarios: {}",
        sim.addr,
        simulate::scenarios().join(", ")
    );
    shutdown.await;
    Ok(Exit::Success)
}
