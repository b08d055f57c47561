//! What a run measured: per-client tallies, merged into a [`Report`] that prints as a table or
//! serialises as the `rarakoon-bench/1` JSON object (schema in `bench/mod.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::OpKind;

/// The JSON schema identifier; bumped on any incompatible change of [`Report`].
pub const SCHEMA: &str = "rarakoon-bench/1";

/// Latency histogram in nanoseconds, 3 significant digits, growing as needed.
fn histogram() -> Histogram<u64> {
    match Histogram::new(3) {
        Ok(h) => h,
        // A constant argument hdrhistogram documents as valid (1..=5 digits).
        Err(e) => panic!("hdrhistogram refused 3 significant digits: {e}"),
    }
}

/// One client's measurements (only requests that started in the measured window).
#[derive(Debug)]
pub struct Tally {
    latencies: BTreeMap<OpKind, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    /// Nothing measured yet.
    pub fn new() -> Tally {
        Tally {
            latencies: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// A request answered with success after `latency`.
    pub fn success(&mut self, op: OpKind, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        let h = self.latencies.entry(op).or_insert_with(histogram);
        // `record` grows the histogram as needed; `saturating_record` would clamp to its
        // current range instead. Only a failed resize (beyond usize) falls back to clamping.
        if h.record(nanos).is_err() {
            h.saturating_record(nanos);
        }
    }

    /// A request that failed, by kind.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: Tally) -> Result<(), hdrhistogram::AdditionError> {
        for (op, h) in other.latencies {
            self.latencies.entry(op).or_insert_with(histogram).add(h)?;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        Ok(())
    }

    /// Successful requests.
    #[cfg(test)]
    pub fn ops(&self) -> u64 {
        self.latencies.values().map(Histogram::len).sum()
    }

    /// Failed requests.
    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The failures by kind.
    pub fn errors_by_kind(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Smallest.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let us = |nanos: u64| nanos as f64 / 1000.0;
        Latency {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// One kind of request's share of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpReport {
    /// Successful requests.
    pub ops: u64,
    /// Successful requests per second of measured time.
    pub ops_per_sec: f64,
    /// Their latencies; absent when there were none.
    pub latency_us: Option<Latency>,
}

/// The open loop's schedule against what was sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenLoop {
    /// The requested rate (requests per second, all clients together).
    pub target_rate: f64,
    /// Requests the schedule called for in the measured window.
    pub intended: u64,
    /// Of those, the requests actually sent (the rest could not be sent before the end
    /// because the clients were behind schedule).
    pub sent: u64,
}

/// The whole result (the `--json` object). Field names and meanings are the stable schema
/// [`SCHEMA`]; new fields may be added, none renamed or removed without a new schema name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The workload's name (`set`, `get`, `mixed`, `test-and-set`, `sequence`, `range`,
    /// `prefix`).
    pub workload: String,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Where latency is measured from: `send` (closed loop) or `intended_send` (open loop).
    pub latency_from: &'static str,
    /// Read consistency (`consistent`, `any`, `at-least`).
    pub consistency: String,
    /// The index `at-least` reads asked for, when they did.
    pub at_least_index: Option<i64>,
    /// `master`, or the node every request was sent to.
    pub target: String,
    /// Nodes of the throwaway cluster when `--local` was given.
    pub local_nodes: Option<u16>,
    /// Clients.
    pub clients: u32,
    /// Connections they share.
    pub connections: u32,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Key space.
    pub keys: u64,
    /// `mixed` only: the fraction of gets asked for.
    pub read_ratio: Option<f64>,
    /// `sequence` only: sets per sequence.
    pub sequence_size: Option<u32>,
    /// `range` and `prefix` only: the most keys per answer.
    pub range_size: Option<u32>,
    /// Warm-up asked for, seconds.
    pub warmup_secs: f64,
    /// Measured time asked for, seconds.
    pub duration_secs: f64,
    /// Measured time it took, seconds (from the end of the warm-up to the last reply).
    pub elapsed_secs: f64,
    /// Whether SIGINT/SIGTERM ended the run early.
    pub interrupted: bool,
    /// Successful requests.
    pub ops: u64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Latencies of all successful requests; absent when there were none.
    pub latency_us: Option<Latency>,
    /// Per kind of request (`set`, `get`, `test_and_set`, `sequence`, `range`, `prefix`).
    pub by_op: BTreeMap<String, OpReport>,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by kind: Arakoon's error names (`E_NOT_MASTER`, ...) for error
    /// replies; `timeout`, `connection_lost`, `connect_failed` for the others.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Open loop only.
    pub open_loop: Option<OpenLoop>,
}

/// The run's settings the report repeats.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// See [`Report`].
    pub workload: String,
    /// See [`Report`].
    pub consistency: String,
    /// See [`Report`].
    pub at_least_index: Option<i64>,
    /// See [`Report`].
    pub target: String,
    /// See [`Report`].
    pub local_nodes: Option<u16>,
    /// See [`Report`].
    pub clients: u32,
    /// See [`Report`].
    pub connections: u32,
    /// See [`Report`].
    pub key_size: usize,
    /// See [`Report`].
    pub value_size: usize,
    /// See [`Report`].
    pub keys: u64,
    /// See [`Report`].
    pub read_ratio: Option<f64>,
    /// See [`Report`].
    pub sequence_size: Option<u32>,
    /// See [`Report`].
    pub range_size: Option<u32>,
    /// See [`Report`].
    pub warmup: Duration,
    /// See [`Report`].
    pub duration: Duration,
    /// Open loop: the target rate.
    pub rate: Option<f64>,
}

impl Report {
    /// The report of a run with these settings and merged tally.
    pub fn new(
        facts: &RunFacts,
        tally: &Tally,
        elapsed: Duration,
        interrupted: bool,
        open_loop: Option<(u64, u64)>,
    ) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut all = histogram();
        let mut by_op = BTreeMap::new();
        for (op, h) in &tally.latencies {
            // Adding into an auto-resizing histogram cannot fail.
            let _ = all.add(h);
            by_op.insert(
                op.name().to_owned(),
                OpReport {
                    ops: h.len(),
                    ops_per_sec: per_sec(h.len()),
                    latency_us: (!h.is_empty()).then(|| Latency::of(h)),
                },
            );
        }
        Report {
            schema: SCHEMA,
            workload: facts.workload.clone(),
            mode: if facts.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            latency_from: if facts.rate.is_some() {
                "intended_send"
            } else {
                "send"
            },
            consistency: facts.consistency.clone(),
            at_least_index: facts.at_least_index,
            target: facts.target.clone(),
            local_nodes: facts.local_nodes,
            clients: facts.clients,
            connections: facts.connections,
            key_size: facts.key_size,
            value_size: facts.value_size,
            keys: facts.keys,
            read_ratio: facts.read_ratio,
            sequence_size: facts.sequence_size,
            range_size: facts.range_size,
            warmup_secs: facts.warmup.as_secs_f64(),
            duration_secs: facts.duration.as_secs_f64(),
            elapsed_secs: secs,
            interrupted,
            ops: all.len(),
            ops_per_sec: per_sec(all.len()),
            latency_us: (!all.is_empty()).then(|| Latency::of(&all)),
            by_op,
            errors: tally.errors(),
            errors_by_kind: tally.errors_by_kind().clone(),
            open_loop: match (facts.rate, open_loop) {
                (Some(target_rate), Some((intended, sent))) => Some(OpenLoop {
                    target_rate,
                    intended,
                    sent,
                }),
                _ => None,
            },
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let loop_text = match &self.open_loop {
            Some(o) => format!("open loop at {} ops/s", o.target_rate),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "bench {}: {loop_text}, {} client(s) on {} connection(s), target {}{}",
            self.workload,
            self.clients,
            self.connections,
            self.target,
            self.local_nodes
                .map(|n| format!(" of a throwaway {n}-node cluster"))
                .unwrap_or_default(),
        );
        let mut shape = format!(
            "{}-byte keys, {}-byte values, {} keys, {} reads",
            self.key_size, self.value_size, self.keys, self.consistency
        );
        if let Some(i) = self.at_least_index {
            let _ = write!(shape, " (index {i})");
        }
        if let Some(r) = self.read_ratio {
            let _ = write!(shape, ", read ratio {r}");
        }
        if let Some(k) = self.sequence_size {
            let _ = write!(shape, ", {k} sets per sequence");
        }
        if let Some(k) = self.range_size {
            let _ = write!(shape, ", up to {k} keys per answer");
        }
        let _ = writeln!(out, "{shape}");
        let _ = writeln!(
            out,
            "measured {:.2} s after a {:.2} s warm-up{}",
            self.elapsed_secs,
            self.warmup_secs,
            if self.interrupted {
                " (interrupted early)"
            } else {
                ""
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<13} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let row = |out: &mut String, name: &str, ops: u64, rate: f64, l: Option<&Latency>| {
            let ms = |us: f64| format!("{:.3}", us / 1000.0);
            let cells = l.map_or_else(
                || vec!["-".to_owned(); 5],
                |l| vec![ms(l.p50), ms(l.p90), ms(l.p99), ms(l.p999), ms(l.max)],
            );
            let _ = writeln!(
                out,
                "{name:<13} {ops:>10} {rate:>11.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            );
        };
        for (name, op) in &self.by_op {
            row(
                &mut out,
                name,
                op.ops,
                op.ops_per_sec,
                op.latency_us.as_ref(),
            );
        }
        if self.by_op.len() > 1 {
            row(
                &mut out,
                "all",
                self.ops,
                self.ops_per_sec,
                self.latency_us.as_ref(),
            );
        }
        let _ = writeln!(out);
        if self.errors == 0 {
            let _ = writeln!(out, "errors: none");
        } else {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "errors: {} ({})", self.errors, kinds.join(", "));
        }
        match &self.open_loop {
            Some(o) => {
                let _ = writeln!(
                    out,
                    "open loop: {} of {} scheduled requests sent; latency counted from each \
                     request's intended send time (corrected for coordinated omission)",
                    o.sent, o.intended
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "closed loop: latency counted from each request's actual send (not corrected \
                     for coordinated omission; use --rate for that)"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn facts(rate: Option<f64>) -> RunFacts {
        RunFacts {
            workload: "mixed".into(),
            consistency: "consistent".into(),
            at_least_index: None,
            target: "master".into(),
            local_nodes: Some(3),
            clients: 2,
            connections: 1,
            key_size: 16,
            value_size: 100,
            keys: 10,
            read_ratio: Some(0.5),
            sequence_size: None,
            range_size: None,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            rate,
        }
    }

    #[test]
    fn merged_tallies_give_ordered_percentiles_and_counts() {
        let mut a = Tally::new();
        let mut b = Tally::new();
        for us in 1..=1000u64 {
            a.success(OpKind::Get, Duration::from_micros(us));
        }
        b.success(OpKind::Set, Duration::from_millis(50));
        b.success(OpKind::Set, Duration::ZERO);
        b.error("timeout");
        b.error("E_NOT_MASTER");
        b.error("timeout");
        a.merge(b).unwrap();
        assert_eq!(a.ops(), 1002);
        assert_eq!(a.errors(), 3);
        let r = Report::new(&facts(None), &a, Duration::from_secs(2), false, None);
        assert_eq!(r.ops, 1002);
        assert!((r.ops_per_sec - 501.0).abs() < 1e-9);
        let l = r.latency_us.unwrap();
        assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99);
        assert!(l.p99 <= l.p999 && l.p999 <= l.max);
        // 3 significant digits: within 0.1 % of the recorded values.
        assert!((l.max - 50_000.0).abs() <= 50.0, "{l:?}");
        assert!((l.p50 - 500.0).abs() <= 1.0, "{l:?}");
        assert!(l.min > 0.0);
        assert_eq!(r.by_op["get"].ops, 1000);
        assert_eq!(r.by_op["set"].ops, 2);
        assert_eq!(r.errors_by_kind["timeout"], 2);
        assert_eq!(r.errors_by_kind["E_NOT_MASTER"], 1);
        let table = r.table();
        assert!(
            table.contains("errors: 3 (E_NOT_MASTER 1, timeout 2)"),
            "{table}"
        );
        assert!(table.contains("\nall "), "{table}");
        assert!(table.contains("not corrected"), "{table}");
    }

    #[test]
    fn the_json_schema_keeps_its_field_names() {
        let mut t = Tally::new();
        t.success(OpKind::Get, Duration::from_micros(10));
        let r = Report::new(
            &facts(Some(100.0)),
            &t,
            Duration::from_secs(1),
            false,
            Some((100, 99)),
        );
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "at_least_index",
                "by_op",
                "clients",
                "connections",
                "consistency",
                "duration_secs",
                "elapsed_secs",
                "errors",
                "errors_by_kind",
                "interrupted",
                "key_size",
                "keys",
                "latency_from",
                "latency_us",
                "local_nodes",
                "mode",
                "open_loop",
                "ops",
                "ops_per_sec",
                "range_size",
                "read_ratio",
                "schema",
                "sequence_size",
                "target",
                "value_size",
                "warmup_secs",
                "workload",
            ]
        );
        assert_eq!(v["schema"], "rarakoon-bench/1");
        assert_eq!(v["mode"], "open");
        assert_eq!(v["latency_from"], "intended_send");
        assert_eq!(v["open_loop"]["intended"], 100);
        let mut lat: Vec<&str> = v["latency_us"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        lat.sort_unstable();
        assert_eq!(lat, ["max", "mean", "min", "p50", "p90", "p99", "p999"]);
        assert_eq!(v["by_op"]["get"]["ops"], 1);
    }

    #[test]
    fn a_run_without_successes_reports_no_latencies() {
        let mut t = Tally::new();
        t.error("connect_failed");
        let r = Report::new(&facts(None), &t, Duration::ZERO, true, None);
        assert_eq!(r.ops, 0);
        assert_eq!(r.ops_per_sec, 0.0);
        assert!(r.latency_us.is_none());
        assert!(r.table().contains("interrupted"));
    }
}
