//! One task per sensor: read on the sensor's own interval, on a blocking thread, with a timeout,
//! and hand the result to the hub. A slow or wedged sensor only ever delays itself.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use edgesense_sensors::{RetriedErrors, Sensor, SensorError};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use crate::hub::Msg;

/// Reads `sensor` every `interval` until the hub goes away.
pub async fn poll(
    index: usize,
    sensor: Box<dyn Sensor>,
    interval: Duration,
    read_timeout: Duration,
    hub: mpsc::Sender<Msg>,
) {
    let sensor = Arc::new(Mutex::new(sensor));
    let mut ticks = tokio::time::interval(interval);
    // A read that overran its slot is not followed by a burst of catch-up reads.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = tokio::time::Instant::now();
        let s = Arc::clone(&sensor);
        let read = tokio::task::spawn_blocking(move || match s.try_lock() {
            Ok(mut s) => {
                let r = s.read();
                (r, s.take_retried())
            }
            // The previous read is still stuck on the bus (it timed out but has not returned).
            Err(_) => (
                Err(SensorError::Timeout(Duration::ZERO)),
                RetriedErrors::default(),
            ),
        });
        let (result, retried) = match tokio::time::timeout(read_timeout, read).await {
            Ok(Ok((r, retried))) => (
                r.map_err(|e| match e {
                    SensorError::Timeout(d) if d.is_zero() => SensorError::Timeout(read_timeout),
                    e => e,
                }),
                retried,
            ),
            Ok(Err(join)) => (
                Err(SensorError::Io(std::io::Error::other(format!(
                    "sensor read panicked: {join}"
                )))),
                RetriedErrors::default(),
            ),
            Err(_) => (
                Err(SensorError::Timeout(read_timeout)),
                RetriedErrors::default(),
            ),
        };
        let msg = Msg::Read {
            sensor: index,
            result,
            retried,
            took: started.elapsed(),
        };
        if hub.send(msg).await.is_err() {
            return;
        }
    }
}
