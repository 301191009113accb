//! What a node writes in its logs: JSON lines on demand, and no personal
//! data at info level or above over a whole demo.

use std::process::Command;

#[test]
fn a_whole_demo_logs_json_lines_that_name_no_person_and_quote_no_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo-logs"))
        .env_remove("MAILLON_LOG")
        .output()
        .expect("the demo runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // The demo's story goes to standard output, the logs to standard error.
    assert!(stdout.contains("Demo complete."), "{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() > 10,
        "the nodes logged their work: {}",
        lines.len()
    );
    let mut levels = std::collections::BTreeSet::new();
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        levels.insert(entry["level"].as_str().unwrap_or("?").to_owned());
    }
    assert!(levels.contains("INFO"), "{levels:?}");
    // One clear line at each start: version, member, roster version, listeners.
    let starts: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "node serving")
        .collect();
    assert!(
        starts.len() >= 4,
        "one start line per node: {}",
        starts.len()
    );
    for start in &starts {
        let fields = &start["fields"];
        assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"), "{start}");
        for name in [
            "member",
            "roster",
            "peer_addr",
            "client_addr",
            "metrics",
            "console",
        ] {
            assert!(!fields[name].is_null(), "{name} in {start}");
        }
    }
    // Everything the demo said about the person: names, birth date, the
    // sections' contents, the purposes and justifications given.
    for personal in [
        "Camille",
        "Martin",
        "1984-03-12",
        "hébergée",
        "demande_logement_social",
        "635.71",
        "montant_mensuel",
        "quotient_familial",
        "parent_isole",
        "logement stable",
        "dossier FSL",
        "coordination du parcours",
        "droit aux aides au logement",
        "enfant de quatre ans",
        // The second act: an alert's words, an orientation's reason and
        // steps' notes, the census match's purpose.
        "Jeune mère",
        "rue du Faubourg",
        "droits au logement non ouverts",
        "Rendez-vous mardi",
        "Droits ouverts",
        "non-recours",
    ] {
        let found: Vec<&&str> = lines.iter().filter(|l| l.contains(personal)).collect();
        assert!(found.is_empty(), "{personal:?} logged: {found:?}");
    }
}
