//! `maillon indicators`: the federation's counts for a period, small cells
//! suppressed, as a table, CSV or JSON.

use maillon_proto::v1 as pb;

use super::{print_value, say};
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon indicators --period …`.
pub(super) async fn run(conn: &Conn, period: &str, csv: bool, json: bool) -> Result<(), CliError> {
    if let Err(reason) = period.parse::<maillon_node::indicators::Period>() {
        return Err(CliError::BadArgument {
            arg: "period",
            source: maillon_node::types::ParseError::new("period", reason),
        });
    }
    let r = conn
        .api()
        .indicators(conn.req(pb::IndicatorsRequest {
            period: period.to_owned(),
        }))
        .await?
        .into_inner();
    if json {
        print_value(&serde_json::json!({
            "period": r.period,
            "threshold": r.threshold,
            "members": r.members,
            "missing": r.missing,
            "rows": r.rows.iter().map(|row| serde_json::json!({
                "indicator": row.indicator,
                "by": row.by,
                "territory": row.territory,
                "members": row.members,
                "total": row.total,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    if csv {
        let mut header = vec![
            "indicator".to_owned(),
            "by".to_owned(),
            "territory".to_owned(),
        ];
        header.extend(r.members.iter().cloned());
        header.push("total".into());
        say(&header.join(","));
        for row in &r.rows {
            let mut line = vec![row.indicator.clone(), row.by.clone(), row.territory.clone()];
            line.extend(row.members.iter().cloned());
            line.push(row.total.clone());
            say(&line.join(","));
        }
        return Ok(());
    }
    say(&format!(
        "indicators for {} (counts under {} shown as \"< {}\"; a total a suppressed count enters shown as \">= \" the rest)",
        r.period, r.threshold, r.threshold
    ));
    if !r.missing.is_empty() {
        say(&format!(
            "MISSING: {} did not answer; their counts are not in the totals",
            r.missing.join(", ")
        ));
    }
    let mut widths = vec!["indicator".len(), "by".len(), "territory".len()];
    widths.extend(r.members.iter().map(String::len));
    widths.push("total".len());
    for row in &r.rows {
        let cells = std::iter::once(&row.indicator)
            .chain(std::iter::once(&row.by))
            .chain(std::iter::once(&row.territory))
            .chain(&row.members)
            .chain(std::iter::once(&row.total));
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut head = vec!["indicator", "by", "territory"];
    head.extend(r.members.iter().map(String::as_str));
    head.push("total");
    say(&line(head));
    for row in &r.rows {
        let mut cells = vec![
            row.indicator.as_str(),
            row.by.as_str(),
            row.territory.as_str(),
        ];
        cells.extend(row.members.iter().map(String::as_str));
        cells.push(row.total.as_str());
        say(&line(cells));
    }
    if r.rows.is_empty() {
        say("nothing was counted in this period");
    }
    Ok(())
}
