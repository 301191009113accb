//! `maillon whoami` and `maillon user …`: who a token belongs to, and the node's users (admin).

use maillon_node::config::Profile;
use maillon_node::types::{Role, UserName};
use maillon_proto::v1 as pb;

use super::{arg, say};
use crate::args::UserCmd;
use crate::client::Conn;
use crate::error::CliError;

/// `maillon whoami`.
pub(super) async fn whoami(conn: &Conn, json: bool) -> Result<(), CliError> {
    let r = conn
        .api()
        .who_am_i(conn.req(pb::WhoAmIRequest {}))
        .await?
        .into_inner();
    if json {
        super::print_value(&serde_json::json!({
            "user": r.user,
            "member": r.member,
            "role": r.role,
            "token_expires_at": (r.token_expires_at != 0).then_some(r.token_expires_at),
        }));
        return Ok(());
    }
    let until = match r.token_expires_at {
        0 => "without an end (rotate it to give it one)".to_owned(),
        t => format!("valid until {}", super::utc(t)),
    };
    say(&format!(
        "{} at {} ({}); token {until}",
        r.user, r.member, r.role
    ));
    Ok(())
}

/// Runs `maillon user …` with the admin's `profile` and connection.
pub(super) async fn run(
    profile: &Profile,
    conn: &Conn,
    cmd: UserCmd,
    json: bool,
) -> Result<(), CliError> {
    match cmd {
        UserCmd::Add {
            name,
            role,
            profile_out,
            valid_days,
            console,
        } => {
            let name: UserName = arg("name", &name)?;
            let role: Role = arg("role", &role)?;
            let r = conn
                .api()
                .add_user(conn.req(pb::AddUserRequest {
                    name: name.to_string(),
                    role: role.to_string(),
                    valid_days,
                }))
                .await?
                .into_inner();
            let handed = hand_over(profile, &r, "created", profile_out, false, json);
            // The user exists now: its token is shown even if the link fails.
            let link = match (&handed, console) {
                (Ok(_), true) => Some(console_link(conn, &name).await),
                _ => None,
            };
            if let Ok(Some(mut value)) = handed {
                if let Some(Ok((url, expires_at))) = &link {
                    value["console_link"] = serde_json::json!(url);
                    value["console_link_expires_at"] = serde_json::json!(expires_at);
                }
                super::print_value(&value);
            } else {
                handed?;
                if let Some(Ok((url, expires_at))) = &link {
                    say(&link_line(&name, url, *expires_at));
                }
            }
            link.transpose()?;
        }
        UserCmd::ConsoleLink { name } => {
            let name: UserName = arg("name", &name)?;
            let (url, expires_at) = console_link(conn, &name).await?;
            super::done(
                json,
                serde_json::json!({ "user": name.to_string(), "console_link": url, "expires_at": expires_at }),
                &link_line(&name, &url, expires_at),
            );
        }
        UserCmd::Rotate {
            name,
            profile_out,
            valid_days,
        } => {
            let name: UserName = arg("name", &name)?;
            let r = conn
                .api()
                .rotate_user_token(conn.req(pb::RotateUserTokenRequest {
                    name: name.to_string(),
                    valid_days,
                }))
                .await?
                .into_inner();
            if let Some(value) = hand_over(
                profile,
                &r,
                "given a new token (the old one no longer works)",
                profile_out,
                true,
                json,
            )? {
                super::print_value(&value);
            }
        }
        UserCmd::List => {
            let users = conn
                .api()
                .list_users(conn.req(pb::ListUsersRequest {}))
                .await?
                .into_inner()
                .users;
            if json {
                let list: Vec<serde_json::Value> = users.iter().map(user_json).collect();
                super::print_value(&serde_json::json!({ "users": list }));
            } else {
                for u in &users {
                    let ends = if u.token_expires_at == 0 {
                        "never (rotate it)".to_owned()
                    } else {
                        maillon_node::types::Date::from_unix(u.token_expires_at).to_string()
                    };
                    let identity = if u.identity.is_empty() {
                        String::new()
                    } else {
                        format!("  console identity {}", u.identity)
                    };
                    super::say(&format!(
                        "{:<24} {:<11} token ends {ends}{identity}",
                        u.name, u.role
                    ));
                }
            }
        }
        UserCmd::Update {
            name,
            role,
            identity,
            no_identity,
        } => {
            let name: UserName = arg("name", &name)?;
            let role = role.map(|r| arg::<Role>("role", &r)).transpose()?;
            let identity = if no_identity {
                Some(String::new())
            } else {
                identity
            };
            let u = conn
                .api()
                .update_user(conn.req(pb::UpdateUserRequest {
                    name: name.to_string(),
                    role: role.map(|r| r.to_string()).unwrap_or_default(),
                    identity,
                }))
                .await?
                .into_inner();
            let identity = if u.identity.is_empty() {
                "no console identity".to_owned()
            } else {
                format!("console identity {}", u.identity)
            };
            super::done(
                json,
                user_json(&u),
                &format!("user {} is {}; {identity}", u.name, u.role),
            );
        }
        UserCmd::Remove { name } => {
            let name: UserName = arg("name", &name)?;
            conn.api()
                .remove_user(conn.req(pb::RemoveUserRequest {
                    name: name.to_string(),
                }))
                .await?;
            if json {
                super::print_value(&serde_json::json!({"user": name.to_string(), "removed": true}));
            } else {
                println!("user {name} removed; its token no longer works");
            }
        }
    }
    Ok(())
}

/// A user as `--json` prints it.
fn user_json(u: &pb::UserEntry) -> serde_json::Value {
    serde_json::json!({
        "user": u.name,
        "role": u.role,
        "created_at": u.created_at,
        "token_expires_at": (u.token_expires_at != 0).then_some(u.token_expires_at),
        "identity": (!u.identity.is_empty()).then_some(&u.identity),
    })
}

/// A one-time console link for `name`, and when it ends.
async fn console_link(conn: &Conn, name: &UserName) -> Result<(String, i64), CliError> {
    let r = conn
        .api()
        .issue_console_link(conn.req(pb::IssueConsoleLinkRequest {
            name: name.to_string(),
        }))
        .await?
        .into_inner();
    Ok((r.url, r.expires_at))
}

fn link_line(name: &UserName, url: &str, expires_at: i64) -> String {
    format!(
        "console link for {name} (works once, until {}): {url}",
        super::utc(expires_at)
    )
}

/// Gives a new token to whoever runs the command: in a profile written 0600
/// at `out` (replacing the one there when `replace`: a rotation renews the
/// user's profile), or printed once. The node already changed: a profile
/// that cannot be written prints the token rather than lose it. With
/// `json`, returns the JSON value for the caller to print (whole).
fn hand_over(
    profile: &Profile,
    r: &pb::AddUserReply,
    done: &str,
    out: Option<std::path::PathBuf>,
    replace: bool,
    json: bool,
) -> Result<Option<serde_json::Value>, CliError> {
    let until = super::utc(r.expires_at);
    let report = |token: Option<&str>, written: Option<&std::path::Path>| {
        serde_json::json!({
            "user": r.name,
            "role": r.role,
            "expires_at": r.expires_at,
            "token": token,
            "profile": written.map(|p| p.display().to_string()),
        })
    };
    if let Some(out) = out {
        let new = Profile {
            user: r.name.clone(),
            token: r.token.clone(),
            ..profile.clone()
        };
        let written = if replace {
            new.replace(&out)
        } else {
            new.write_new(&out)
        };
        match written {
            Ok(()) if json => return Ok(Some(report(None, Some(&out)))),
            Ok(()) => say(&format!(
                "user {} ({}) {done}; valid until {until}; profile written to {}",
                r.name,
                r.role,
                out.display()
            )),
            Err(e) if json => {
                // The node already changed: the token is shown, not lost.
                super::print_value(&report(Some(&r.token), None));
                return Err(e.into());
            }
            Err(e) => {
                say(&format!(
                    "user {} ({}) {done}; valid until {until}; the profile could not be written ({e}); token (shown once): {}",
                    r.name, r.role, r.token
                ));
                return Err(e.into());
            }
        }
    } else if json {
        return Ok(Some(report(Some(&r.token), None)));
    } else {
        say(&format!(
            "user {} ({}) {done}; valid until {until}; token (shown once): {}",
            r.name, r.role, r.token
        ));
    }
    Ok(None)
}

/// `maillon outbox` (admin): every delivery waiting for a member.
pub(super) async fn outbox(conn: &Conn, json: bool) -> Result<(), CliError> {
    let r = conn
        .api()
        .outbox(conn.req(pb::OutboxRequest {}))
        .await?
        .into_inner();
    if json {
        let items: Vec<serde_json::Value> = r
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "to": e.to,
                    "kind": e.kind,
                    "about": e.about,
                    "attempts": e.attempts,
                    "next_at": e.next_at,
                })
            })
            .collect();
        super::print_value(&serde_json::Value::Array(items));
        return Ok(());
    }
    if r.entries.is_empty() {
        println!("nothing waits: every member is in step");
    }
    for e in &r.entries {
        super::say(&format!(
            "to {}  {}  {}  {} failed attempts, next at {}",
            e.to,
            e.kind,
            e.about,
            e.attempts,
            super::utc(e.next_at)
        ));
    }
    Ok(())
}
