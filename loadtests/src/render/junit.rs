//! JUnit XML of a run (`junit.xml` in the run folder) for CI systems that
//! show test results: one test case per rule (ours and Goose's), and one
//! that errors when the run gave no verdict, so an invalid run is never
//! shown as green.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::{Outcome, RunReport};

/// The run as JUnit XML.
pub fn render(report: &RunReport) -> String {
    to_xml(suite(report))
}

/// The run's test suite: one case per rule and one for its validity.
pub fn suite(report: &RunReport) -> TestSuite {
    let mut suite = TestSuite::new(format!("odin-load {}", report.scenario.name));
    suite.set_time(std::time::Duration::from_secs_f64(
        report.duration_secs.max(0.0),
    ));
    let invalid = match &report.outcome {
        Outcome::Invalid { reason } => Some(format!("invalid run, no verdict: {reason}")),
        _ => None,
    };
    suite.add_test_case(case("the run is valid", validity(invalid)));
    for v in report.thresholds.iter().chain(&report.baseline) {
        let status = if v.passed {
            TestCaseStatus::success()
        } else {
            failure(format!("observed {}, limit {}", v.observed, v.limit))
        };
        suite.add_test_case(case(&v.rule, status));
    }
    for g in &report.goose_thresholds {
        let status = if g.passed {
            TestCaseStatus::success()
        } else {
            failure(format!("observed {}", g.observed))
        };
        suite.add_test_case(case(&format!("goose: {}", g.rule), status));
    }
    suite
}

/// The status of a run's (or a gate's) validity: an error, never a
/// failure, when it gave no verdict.
pub(crate) fn validity(invalid: Option<String>) -> TestCaseStatus {
    match invalid {
        Some(message) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(message);
            s
        }
        None => TestCaseStatus::success(),
    }
}

/// A failed rule's status.
pub(crate) fn failure(message: String) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
    s.set_message(message);
    s
}

/// A test case named `name`.
pub(crate) fn case(name: &str, status: TestCaseStatus) -> TestCase {
    let mut c = TestCase::new(name, status);
    c.set_classname("odin-load");
    c
}

/// One suite as a whole JUnit document.
pub(crate) fn to_xml(suite: TestSuite) -> String {
    let mut doc = Report::new("odin-load");
    doc.add_test_suite(suite);
    doc.to_string()
        .expect("a JUnit report serialises to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::Rule;

    #[test]
    fn one_case_per_rule_and_an_error_for_an_invalid_run() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
        let scenario = crate::scenario::ScenarioFile::load(&path)
            .unwrap()
            .resolve("quick")
            .unwrap();
        let report = RunReport {
            version: crate::report::REPORT_VERSION,
            scenario,
            started_at: String::new(),
            duration_secs: 12.5,
            target: "embedded".into(),
            processes: 1,
            users: Default::default(),
            publisher: Default::default(),
            accounting: Default::default(),
            latency: Default::default(),
            latency_histogram: String::new(),
            latency_stamped: Default::default(),
            latency_stamped_histogram: String::new(),
            latency_unscheduled: 0,
            timeline: Vec::new(),
            server: Default::default(),
            generator: Default::default(),
            thresholds: vec![
                Rule::parse("loss<=0").unwrap().judge(Some(0.0)),
                Rule::parse("latency-p99<5ms").unwrap().judge(Some(7000.0)),
            ],
            goose_thresholds: Vec::new(),
            baseline: Vec::new(),
            outcome: Outcome::Invalid {
                reason: "the load generator saturated".into(),
            },
            fleet: None,
        };
        let xml = render(&report);
        assert!(xml.contains(r#"tests="3""#), "{xml}");
        assert!(xml.contains(r#"failures="1""#), "{xml}");
        assert!(xml.contains(r#"errors="1""#), "{xml}");
        assert!(xml.contains("latency-p99&lt;5ms"), "{xml}");
        assert!(xml.contains("observed 7.00ms, limit &lt;5.00ms"), "{xml}");
        assert!(xml.contains("invalid run, no verdict: the load generator saturated"));
    }
}
