//! oha's JSON summary (`oha --output-format json`) as the `RESULT` line bench/storm.lua prints for
//! wrk, so that open-loop runs land in the same results.tsv columns. oha gives seconds; the line
//! has microseconds. oha does not split its errors the way wrk does: every one of them is
//! counted as a connect error, with the message kept in the raw JSON; except the requests still
//! in flight when the run's duration ended ("aborted due to deadline"), which are no error of
//! the server's (wrk does not count those either).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum OhaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not oha's JSON summary: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: oha reports no latency percentile {key}")]
    Missing { path: PathBuf, key: &'static str },
}

#[derive(Debug, Deserialize)]
struct Summary {
    total: f64,
    slowest: Option<f64>,
    average: Option<f64>,
    #[serde(rename = "totalData")]
    total_data: u64,
}

#[derive(Debug, Deserialize)]
struct OhaJson {
    summary: Summary,
    #[serde(rename = "latencyPercentiles")]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(rename = "statusCodeDistribution")]
    status_codes: BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution")]
    errors: BTreeMap<String, u64>,
}

/// oha's word for a request still in flight when `-z DURATION` ended.
const STOPPED_BY_DURATION: &str = "aborted due to deadline";

/// The RESULT line of the oha summary in `path`.
pub fn result_line(path: &Path) -> Result<String, OhaError> {
    let text = std::fs::read_to_string(path).map_err(|source| OhaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let oha: OhaJson = serde_json::from_str(&text).map_err(|source| OhaError::Json {
        path: path.to_owned(),
        source,
    })?;
    let us = |seconds: f64| (seconds * 1e6).round() as u64;
    let percentile = |key: &'static str| {
        oha.latency_percentiles
            .get(key)
            .copied()
            .flatten()
            .map(us)
            .ok_or_else(|| OhaError::Missing {
                path: path.to_owned(),
                key,
            })
    };
    let answered: u64 = oha.status_codes.values().sum();
    let failed_status: u64 = oha
        .status_codes
        .iter()
        .filter(|(code, _)| code.parse::<u16>().map_or(true, |c| c > 399))
        .map(|(_, n)| n)
        .sum();
    let errors: u64 = oha
        .errors
        .iter()
        .filter(|(what, _)| what.as_str() != STOPPED_BY_DURATION)
        .map(|(_, n)| n)
        .sum();
    let requests = answered + errors;
    let duration_us = us(oha.summary.total);
    Ok(format!(
        "RESULT requests={requests} duration_us={duration_us} bytes={} rps={:.1} p50_us={} \
         p90_us={} p99_us={} p999_us={} max_us={} mean_us={:.1} err_connect={errors} \
         err_read=0 err_write=0 err_status={failed_status} err_timeout=0",
        oha.summary.total_data,
        answered as f64 / oha.summary.total.max(1e-9),
        percentile("p50")?,
        percentile("p90")?,
        percentile("p99")?,
        percentile("p99.9")?,
        us(oha.summary.slowest.unwrap_or(0.0)),
        oha.summary.average.unwrap_or(0.0) * 1e6,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oha_summary_to_result_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(
            &path,
            r#"{"summary":{"successRate":1.0,"total":20.0,"slowest":0.0123,"fastest":0.0001,
                "average":0.0004,"requestsPerSec":1000.0,"totalData":4000,"sizePerRequest":400,
                "sizePerSec":200.0},
               "latencyPercentiles":{"p10":0.0002,"p50":0.0003,"p90":0.0006,"p99":0.0011,
                "p99.9":0.004,"p99.99":0.01},
               "statusCodeDistribution":{"200":19990,"503":5},
               "errorDistribution":{"connection refused":5,"aborted due to deadline":3}}"#,
        )
        .unwrap();
        assert_eq!(
            result_line(&path).unwrap(),
            "RESULT requests=20000 duration_us=20000000 bytes=4000 rps=999.8 p50_us=300 \
             p90_us=600 p99_us=1100 p999_us=4000 max_us=12300 mean_us=400.0 err_connect=5 \
             err_read=0 err_write=0 err_status=5 err_timeout=0"
        );
    }

    #[test]
    fn refuses_what_is_not_oha() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, "Error: connection refused").unwrap();
        assert!(matches!(result_line(&path), Err(OhaError::Json { .. })));
    }
}
