//! Prometheus remote-write protocol 1.0: what the agent pushes when Prometheus missed its
//! readings (a partition, a Prometheus restart).
//!
//! The body is a protobuf `prometheus.WriteRequest` (only `timeseries`: labels and samples;
//! no metadata, no exemplars), compressed with snappy's *block* format (not the framed stream
//! format), and posted with the headers in [`HEADERS`]. Labels of a series must be sorted by
//! name and unique, `__name__` among them; samples of a series must be in time order within a
//! request, and a receiver answers 400 for a whole request when one sample is out of its bounds
//! (Prometheus rolls the request back), 5xx or 429 for what the sender should retry.
//! Spec: <https://prometheus.io/docs/specs/remote_write_spec/>.

/// The headers every push carries (besides `User-Agent`).
pub const HEADERS: [(&str, &str); 3] = [
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one series' labels and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a time in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a series without __name__")]
    NoName,
    #[error("label {0:?} given twice in one series")]
    DuplicateLabel(String),
    #[error("invalid label name {0:?} (letters, digits and _, not starting with a digit)")]
    LabelName(String),
    #[error("samples of {0} are not in time order")]
    Unordered(String),
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl TimeSeries {
    /// A series with `labels` sorted by name, as the protocol requires.
    pub fn new(mut labels: Vec<Label>, samples: Vec<Sample>) -> TimeSeries {
        labels.sort();
        TimeSeries { labels, samples }
    }

    /// The series' `__name__`, for messages.
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|l| l.name == "__name__")
            .map_or("", |l| l.value.as_str())
    }

    /// Checks what a receiver would refuse the whole request for.
    pub fn check(&self) -> Result<(), Error> {
        if self.name().is_empty() {
            return Err(Error::NoName);
        }
        for l in &self.labels {
            if !valid_label_name(&l.name) {
                return Err(Error::LabelName(l.name.clone()));
            }
        }
        for w in self.labels.windows(2) {
            if w[0].name == w[1].name {
                return Err(Error::DuplicateLabel(w[0].name.clone()));
            }
        }
        if self
            .samples
            .windows(2)
            .any(|w| w[0].timestamp > w[1].timestamp)
        {
            return Err(Error::Unordered(self.name().to_owned()));
        }
        Ok(())
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's label names (`__name__` included).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl WriteRequest {
    /// How many samples the request carries.
    pub fn samples(&self) -> usize {
        self.timeseries.iter().map(|t| t.samples.len()).sum()
    }

    /// The body of a push: checked, protobuf-encoded, snappy-compressed (block format).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        for t in &self.timeseries {
            t.check()?;
        }
        let raw = prost::Message::encode_to_vec(self);
        Ok(snap::raw::Encoder::new().compress_vec(&raw)?)
    }

    /// A push's body read back (what a receiver does).
    pub fn decode(body: &[u8]) -> Result<WriteRequest, Error> {
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        Ok(prost::Message::decode(raw.as_slice())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries::new(
            vec![
                Label::new("sensor", "env"),
                Label::new("__name__", name),
                Label::new("job", "edgesense"),
                Label::new("instance", "10.0.1.5:9842"),
            ],
            samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        )
    }

    #[test]
    fn labels_are_sorted_by_name_with_name_first() {
        let t = series("edgesense_temperature_celsius", &[]);
        let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "job", "sensor"]);
    }

    #[test]
    fn a_push_decodes_to_what_was_sent() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    "edgesense_temperature_celsius",
                    &[(1_000, 21.5), (3_000, 21.625)],
                ),
                series("edgesense_humidity_ratio", &[(1_000, 0.47)]),
            ],
        };
        let body = req.encode().unwrap();
        assert_eq!(WriteRequest::decode(&body).unwrap(), req);
        assert_eq!(req.samples(), 3);
    }

    #[test]
    fn the_body_is_snappy_block_format_of_the_protobuf() {
        let req = WriteRequest {
            timeseries: vec![series("m", &[(5, 1.0)])],
        };
        let body = req.encode().unwrap();
        // Block format starts with the uncompressed length as a varint; the framed format
        // would start with its stream identifier chunk (0xff).
        let raw = prost::Message::encode_to_vec(&req);
        assert_eq!(usize::from(body[0]), raw.len());
        assert_ne!(body[0], 0xff);
        // Field 1 (timeseries), wire type 2 (length-delimited).
        assert_eq!(raw[0], 0x0a);
    }

    #[test]
    fn what_a_receiver_refuses_is_refused_before_sending() {
        let mut no_name = series("m", &[]);
        no_name.labels.retain(|l| l.name != "__name__");
        let unordered = series("m", &[(2, 1.0), (1, 1.0)]);
        let mut twice = series("m", &[]);
        twice.labels.push(Label::new("sensor", "again"));
        twice.labels.sort();
        let bad_name = TimeSeries::new(
            vec![Label::new("__name__", "m"), Label::new("1x", "")],
            vec![],
        );
        for (t, want) in [
            (no_name, "without __name__"),
            (unordered, "not in time order"),
            (twice, "given twice"),
            (bad_name, "invalid label name"),
        ] {
            let err = WriteRequest {
                timeseries: vec![t],
            }
            .encode()
            .unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
