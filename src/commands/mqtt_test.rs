//! `avscene mqtt-test`: connect with the configured settings, publish to a test topic,
//! receive it back; report success or the exact failure.

use super::context::{CommandError, ConfigArg, Result, println};

/// Test the MQTT settings: connect, publish to <prefix>/mqtt-test/…, receive it back;
/// print success or the exact failure (exit 1).
#[derive(Debug, clap::Args)]
pub struct MqttTestArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: MqttTestArgs) -> Result {
    let settings = args.config.load()?;
    let mqtt = &settings.config.mqtt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the async runtime: {e}")))?;
    let timeout = std::time::Duration::from_secs(5);
    let trip = runtime
        .block_on(crate::publish::connection::round_trip(mqtt, timeout))
        .map_err(|e| CommandError::Failed(format!("MQTT test failed: {e}")))?;
    let user = mqtt
        .username
        .as_deref()
        .map(|u| format!(" as '{u}'"))
        .unwrap_or_default();
    println(format!(
        "MQTT OK: connected to {}:{}{user} in {:.0} ms; published and received {} in {:.1} ms",
        mqtt.host,
        mqtt.port,
        trip.connect.as_secs_f64() * 1000.0,
        trip.topic,
        trip.round_trip.as_secs_f64() * 1000.0
    ));
    Ok(())
}
