//! `rarakoon-bin check-config FILE`: validate a config and summarise it, starting nothing.

use std::path::Path;

use rarakoon_node::ClusterConfig;

/// Prints a summary of a valid config (and its warnings); returns the error otherwise.
pub fn check(file: &Path) -> anyhow::Result<()> {
    let config = ClusterConfig::load(file)?;
    println!(
        "{}: valid; cluster `{}`, master_mode {}, lease {} s, {} node(s)",
        file.display(),
        config.cluster.id,
        config.cluster.master_mode,
        config.cluster.lease_period_secs,
        config.nodes.len()
    );
    for node in &config.nodes {
        let role = if config.is_learner(&node.name) {
            "learner"
        } else if config.is_witness(&node.name) {
            "witness"
        } else {
            "voter"
        };
        println!(
            "  {} ({role}): client {}, messaging {}, home {}",
            node.name,
            node.client_socket_address(),
            node.messaging_address(),
            node.home_dir.display()
        );
    }
    println!(
        "  quorum {}{}",
        config.quorum_size(),
        if config.cluster.quorum.is_some() {
            " (override)"
        } else {
            " (majority of the voting nodes)"
        }
    );
    let preferred = config.preferred_masters();
    if !preferred.is_empty() {
        println!("  preferred masters, in order: {}", preferred.join(", "));
    }
    if let Some(tls) = &config.cluster.tls {
        // Read every node's files now, so a missing or mismatched certificate shows here
        // and not when that node starts.
        for node in &config.nodes {
            rarakoon_node::tls::load(&config, &node.name, file)?;
        }
        println!(
            "  TLS: mutual TLS between nodes (CA {}, TLS {}+); client port {}{}",
            tls.ca_cert.display(),
            tls.version,
            match (tls.service, tls.service_validate_peer) {
                (false, _) => "plain TCP",
                (true, false) => "TLS",
                (true, true) => "TLS with client certificates",
            },
            if tls.admin_names.is_empty() {
                String::new()
            } else {
                format!("; admin operations only for {}", tls.admin_names.join(", "))
            }
        );
    }
    // Load every user-function module now (size, SHA-256, imports, limits), so a wrong hash
    // or a module the node would refuse shows here and not when the nodes start.
    for function in &config.cluster.user_functions {
        let loaded = rarakoon_node::wasm_functions::WasmFunction::load(function)?;
        println!(
            "  user function `{}`: {} (sha256 {}, fuel {}, memory {} page(s))",
            function.name,
            function.module.display(),
            loaded.sha256(),
            function.fuel,
            function.memory_pages
        );
    }
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}
